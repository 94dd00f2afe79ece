"""The learning-rate schedule and the optimiser of a config.

Both follow the ancestor repository of the FER2013 recipe
(WuJie1010/Facial-Expression-Recognition.Pytorch, `mainpro_FER.py`) where a
config asks for its choices, so that its runs can be compared step by step.
`config_check.validate` has refused unknown names before these run.
"""
import jax.numpy as jnp
import optax


def learning_rate_fn(config, steps_per_epoch):
  """The learning rate at a step; constant within an epoch except cosine."""
  lr, s = config.optimizer.lr, config.schedule
  if s.name == 'constant':
    return optax.constant_schedule(lr)
  if s.name == 'step':
    # lr * rate^floor((epoch - start) / every) after epoch `start`, as in
    # mainpro_FER.py.
    def schedule(step):
      epoch = step // steps_per_epoch
      decays = jnp.maximum(epoch - s.decay_start, 0) // s.decay_every
      return lr * s.decay_rate ** decays
    return schedule
  assert s.name == 'cosine', s.name
  return optax.cosine_decay_schedule(lr, config.epochs * steps_per_epoch)


def create_optimizer(config, lr_fn):
  o = config.optimizer
  chain = []
  if o.clip:
    # Element-wise clipping to [-clip, clip], before weight decay, as the
    # ancestor repository's utils.clip_gradient followed by torch SGD.
    chain.append(optax.clip(o.clip))
  if o.weight_decay:
    # Coupled L2 decay (added to the gradient before momentum), as torch SGD.
    chain.append(optax.add_decayed_weights(o.weight_decay))
  if o.name == 'sgd':
    chain.append(optax.sgd(lr_fn, momentum=o.momentum or None,
                           nesterov=o.nesterov))
  else:
    assert o.name == 'adam', o.name
    chain.append(optax.adam(lr_fn))
  return optax.chain(*chain)
