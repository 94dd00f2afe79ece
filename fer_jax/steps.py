"""What is jitted: the training state, the loss, `train_step` and
`eval_step`, and the crop-averaged logits that evaluation and prediction
share.

Pure functions of their arguments; `fer_jax.experiment` partitions them over
a mesh (the state replicated, the batch sharded on `data`) and the training
loop calls them. `train_step(state, batch, rng)` folds the step into `rng`
and returns the new state and a flat dict of scalars.
"""
from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax

from fer_jax import ldl
from fer_jax.models import cpu_conv


class TrainState(flax.struct.PyTreeNode):
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any


def create_train_state(model, tx, input_shape, rng, sharding,
                       abstract=False):
  """Initialises directly into `sharding` (no host copy of the parameters);
  `abstract`: only the shapes, dtypes and shardings, nothing computed."""
  def init(rng):
    variables = model.init(rng, jnp.zeros((1, *input_shape)), train=False)
    return TrainState(step=jnp.zeros((), jnp.int32),
                      params=variables['params'],
                      batch_stats=variables.get('batch_stats', {}),
                      opt_state=tx.init(variables['params']))
  shapes = jax.eval_shape(init, rng)
  if abstract:
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(
        x.shape, x.dtype, sharding=sharding), shapes)
  return jax.jit(init, out_shardings=jax.tree.map(lambda _: sharding,
                                                  shapes),
                 compiler_options=cpu_conv.init_compiler_options())(rng)


def one_hot_loss(logits, labels, label_smoothing=0.0, logit_shift=None):
  """Each image's cross-entropy with its label.

  `logit_shift` (per class: tau * log of the training class prior) is added
  to the logits first: Menon et al.'s logit-adjusted loss (ICLR 2021),
  whose minimiser's plain logits aim at balanced error, so that frequent
  classes must win by a margin. `label_smoothing` e mixes the one-hot target
  with the uniform: (1 - e) one-hot + e / K.
  """
  if logit_shift is not None:
    logits = logits + logit_shift
  if not label_smoothing:
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  return optax.softmax_cross_entropy(logits, optax.smooth_labels(
      jax.nn.one_hot(labels, logits.shape[-1]), label_smoothing))


def training_loss(params, batch_stats, batch, rng, target=None, *, model,
                  class_weights=None, reduction=None, label_smoothing=0.0,
                  logit_shift=None):
  """What `train_step` differentiates: the batch's mean loss in training mode
  (dropout from `rng`, batch statistics), with (float32 logits, the updated
  running statistics). `target`: distributions to learn (fer_jax.ldl, with
  its `reduction`) instead of the labels (`one_hot_loss`)."""
  logits, updates = model.apply(
      {'params': params, 'batch_stats': batch_stats}, batch['image'],
      train=True, rngs={'dropout': rng}, mutable=['batch_stats'])
  logits = loss_precision(logits)
  if target is None:
    loss = one_hot_loss(logits, batch['label'], label_smoothing, logit_shift)
  else:
    loss = ldl.per_image_loss(logits, target, reduction)
  if class_weights is not None:
    loss = loss * jnp.asarray(class_weights)[batch['label']]
  return loss.mean(), (logits, updates.get('batch_stats', {}))


def train_step(state, batch, rng, teacher_variables=None, *, model, tx, lr_fn,
               class_weights=None, teacher=None, ldl_config=None,
               label_smoothing=0.0, logit_shift=None):
  """One SGD step on a global batch; returns the new state and scalars.

  `class_weights` (one per class, or None) weight each image's loss by its
  label's weight; `label_smoothing` and `logit_shift` shape the one-hot
  loss (`one_hot_loss`). With a `teacher` (fer_jax.teacher, its variables an
  argument) the targets are its distributions on this very batch
  (fer_jax.ldl, `ldl_config` = config.ldl) instead of the labels.
  """
  rng = jax.random.fold_in(rng, state.step)
  target, reduction = None, None
  if teacher is not None:
    teacher_logits = teacher.apply(teacher_variables, batch['image'])
    target = ldl.targets(teacher_logits, batch['label'],
                         ldl_config.temperature, ldl_config.onehot_weight)
    reduction = ldl_config.reduction
  (loss, (logits, batch_stats)), grads = jax.value_and_grad(
      training_loss, has_aux=True)(
          state.params, state.batch_stats, batch, rng, target, model=model,
          class_weights=class_weights, reduction=reduction,
          label_smoothing=label_smoothing, logit_shift=logit_shift)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  new_state = state.replace(
      step=state.step + 1, params=optax.apply_updates(state.params, updates),
      batch_stats=batch_stats, opt_state=opt_state)
  metrics = {
      'loss': loss,
      'accuracy': jnp.mean(jnp.argmax(logits, -1) == batch['label']),
      'learning_rate': lr_fn(state.step),
      'grad_norm': optax.tree.norm(grads),
  }
  if teacher is not None:
    metrics['kl_to_teacher'] = jnp.mean(ldl.kl_divergence(
        jax.nn.softmax(teacher_logits / ldl_config.temperature), logits))
  return new_state, metrics


def loss_precision(logits):
  """Logits in float32, whatever the activations' dtype: the softmax, the
  loss and its mean over the batch lose too much in bfloat16
  (`test_train.py::test_bfloat16_trains_as_float32`)."""
  return logits.astype(jnp.float32)


def crop_averaged_logits(variables, images, *, model):
  """Inference-mode logits of (batch, [crops,] H, W, C) images, averaged
  over the crops (the ten-crop test); evaluation and prediction both use it.
  """
  logits = loss_precision(model.apply(
      variables, images.reshape(-1, *images.shape[-3:]), train=False))
  # (batch, crops, classes) -> mean over crops; a no-op for one crop.
  return logits.reshape(images.shape[0], -1, logits.shape[-1]).mean(axis=1)


def eval_step(variables, batch, logit_shift, teacher_variables=None, *, model,
              num_classes, teacher=None, temperature=1.0):
  """Masked confusion matrix and loss sum, and each image's probabilities,
  of the crop-averaged logits plus `logit_shift` (per class: a post-hoc
  logit adjustment, `fer_jax.logit_adjustment`; zeros for none); with a
  teacher, the masked sums of each `ldl.DISTANCES` between its
  (crop-averaged, T-softened) distribution and the student's."""
  logits = crop_averaged_logits(variables, batch['image'],
                                model=model) + logit_shift
  mask = batch['mask'].astype(jnp.float32)
  truth = jax.nn.one_hot(batch['label'], num_classes) * mask[:, None]
  predicted = jax.nn.one_hot(jnp.argmax(logits, -1), num_classes)
  loss = optax.softmax_cross_entropy_with_integer_labels(logits,
                                                         batch['label'])
  out = {'confusion': truth.T @ predicted, 'loss': jnp.sum(loss * mask),
         'probabilities': jax.nn.softmax(logits)}
  if teacher is not None:
    target = jax.nn.softmax(crop_averaged_logits(
        teacher_variables, batch['image'], model=teacher) / temperature)
    for name, values in ldl.distances(target, out['probabilities']).items():
      out[name] = jnp.sum(values * mask)
  return out
