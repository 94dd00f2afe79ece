"""Training and evaluation loops: `train_and_evaluate` and `evaluate`.

One code path for one device or many: the state is replicated and the batch
sharded on the `data` axis of a mesh over all devices (of all processes), and
`jax.jit` partitions the step. BatchNorm therefore normalises over the global
batch, as on one device.
"""
import functools
import json
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import tqdm
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from fer_jax import checkpoint
from fer_jax import convert
from fer_jax import metrics as metrics_lib
from fer_jax import models
from fer_jax.data import pipeline
from fer_jax.models import layers


class TrainState(flax.struct.PyTreeNode):
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any


def learning_rate_fn(config, steps_per_epoch):
  """The learning rate at a step; constant within an epoch except cosine."""
  lr, s = config.optimizer.lr, config.schedule
  if s.name == 'constant':
    return optax.constant_schedule(lr)
  if s.name == 'step':
    # lr * rate^floor((epoch - start) / every) after epoch `start`, as in
    # WuJie1010/Facial-Expression-Recognition.Pytorch (mainpro_FER.py).
    def schedule(step):
      epoch = step // steps_per_epoch
      decays = jnp.maximum(epoch - s.decay_start, 0) // s.decay_every
      return lr * s.decay_rate ** decays
    return schedule
  if s.name == 'cosine':
    return optax.cosine_decay_schedule(lr, config.epochs * steps_per_epoch)
  raise ValueError(f"config.schedule.name={s.name!r}: expected 'constant', "
                   "'step' or 'cosine'")


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
  elif o.name == 'adam':
    chain.append(optax.adam(lr_fn))
  else:
    raise ValueError(f"config.optimizer.name={o.name!r}: expected 'sgd' or "
                     "'adam'")
  return optax.chain(*chain)


def create_train_state(model, tx, input_shape, rng, sharding):
  """Initialises directly into `sharding` (no host copy of the parameters)."""
  def init(rng):
    variables = model.init(rng, jnp.zeros((1, *input_shape)), train=False)
    return TrainState(step=jnp.zeros((), jnp.int32),
                      params=variables['params'],
                      batch_stats=variables.get('batch_stats', {}),
                      opt_state=tx.init(variables['params']))
  abstract = jax.eval_shape(init, rng)
  return jax.jit(init, out_shardings=jax.tree.map(lambda _: sharding,
                                                  abstract))(rng)


def train_step(state, batch, rng, *, model, tx, lr_fn, class_weights=None):
  """One SGD step on a global batch; returns the new state and scalars.

  `class_weights` (one per class, or None) weight each image's loss by its
  label's weight.
  """
  rng = jax.random.fold_in(rng, state.step)

  def loss_fn(params):
    logits, updates = model.apply(
        {'params': params, 'batch_stats': state.batch_stats}, batch['image'],
        train=True, rngs={'dropout': rng}, mutable=['batch_stats'])
    loss = optax.softmax_cross_entropy_with_integer_labels(
        logits, batch['label'])
    if class_weights is not None:
      loss = loss * jnp.asarray(class_weights)[batch['label']]
    return loss.mean(), (logits, updates.get('batch_stats', {}))

  (loss, (logits, batch_stats)), grads = jax.value_and_grad(
      loss_fn, has_aux=True)(state.params)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  new_state = state.replace(
      step=state.step + 1, params=optax.apply_updates(state.params, updates),
      batch_stats=batch_stats, opt_state=opt_state)
  return new_state, {
      'loss': loss,
      'accuracy': jnp.mean(jnp.argmax(logits, -1) == batch['label']),
      'learning_rate': lr_fn(state.step),
      'grad_norm': optax.tree.norm(grads),
  }


def eval_step(variables, batch, *, model, num_classes):
  """Masked confusion matrix and loss sum; logits averaged over crops."""
  images = batch['image']
  logits = model.apply(variables, images.reshape(-1, *images.shape[-3:]),
                       train=False)
  # (batch, crops, classes) -> mean over crops; a no-op for one crop.
  logits = logits.reshape(images.shape[0], -1, num_classes).mean(axis=1)
  mask = batch['mask'].astype(jnp.float32)
  truth = jax.nn.one_hot(batch['label'], num_classes) * mask[:, None]
  predicted = jax.nn.one_hot(jnp.argmax(logits, -1), num_classes)
  loss = optax.softmax_cross_entropy_with_integer_labels(logits,
                                                         batch['label'])
  return {'confusion': truth.T @ predicted, 'loss': jnp.sum(loss * mask)}


def start_from(state, model, path, sharding):
  """`state` with the weights converted to `path` (see fer_jax.convert).

  Every variable is taken from there except a classifier whose class count
  differs, which keeps its fresh initialisation.
  """
  loaded, fields = convert.load(path)
  for key, value in fields.items():
    ours = getattr(model, key, None)
    if key not in ('num_classes', 'name') and ours != value:
      raise ValueError(f'config.model.{key}={ours!r}, but the weights in '
                       f'{path} need {value!r}')
  kept = []

  def take(path_, fresh):
    keys = tuple(k.key for k in path_)
    node = loaded
    for key in keys:
      if key not in node:
        raise ValueError(f'{path} has no {"/".join(keys)}: not weights of '
                         f'config.model.name={fields["name"]!r}?')
      node = node[key]
    if node.shape != fresh.shape:
      kept.append('/'.join(keys))
      return fresh
    return node

  variables = jax.tree_util.tree_map_with_path(
      take, {'params': state.params, 'batch_stats': state.batch_stats})
  _log(f'Started from {path}; freshly initialised (class count differs): '
       f'{", ".join(kept) or "nothing"}')
  variables = jax.device_put(variables, sharding)
  return state.replace(params=variables['params'],
                       batch_stats=variables['batch_stats'])


def validate(config):
  """Rejects impossible values with the key and what was expected."""
  for key in ('batch_size', 'eval_batch_size', 'epochs', 'log_every',
              'keep_checkpoints', 'data.crop'):
    value = functools.reduce(getattr, key.split('.'), config)
    if not isinstance(value, int) or value <= 0:
      raise ValueError(f'config.{key}={value!r}: expected a positive integer')
  for key in ('batch_size', 'eval_batch_size'):
    if config[key] % jax.device_count():
      raise ValueError(
          f'config.{key}={config[key]} does not divide by the '
          f'{jax.device_count()} devices: the batch size is global')
  if config.data.eval_crop not in ('ten', 'centre'):
    raise ValueError(f"config.data.eval_crop={config.data.eval_crop!r}: "
                     "expected 'ten' or 'centre'")
  selection = config.selection_split
  if selection and selection not in config.data.eval_splits:
    raise ValueError(f'config.selection_split={selection!r}: not one of '
                     f'config.data.eval_splits={config.data.eval_splits}')


class Experiment:
  """What training and evaluation share: mesh, data, model, jitted steps."""

  def __init__(self, config):
    validate(config)
    self.config = config
    self.mesh = Mesh(jax.devices(), ('data',))
    self.replicated = NamedSharding(self.mesh, P())
    self.batch_sharding = NamedSharding(self.mesh, P('data'))
    self.data = pipeline.load(config.data, config.batch_size,
                              config.eval_batch_size, config.seed)
    self.steps_per_epoch = self.data.train_size // config.batch_size
    if not self.steps_per_epoch:
      raise ValueError(f'config.batch_size={config.batch_size}: larger than '
                       f'the {self.data.train_size} training images')
    self.total_steps = config.epochs * self.steps_per_epoch
    num_classes = len(self.data.class_names)
    self.model = models.create(config.model, num_classes)
    self.lr_fn = learning_rate_fn(config, self.steps_per_epoch)
    self.tx = create_optimizer(config, self.lr_fn)
    self.eval_step = jax.jit(
        functools.partial(eval_step, model=self.model,
                          num_classes=num_classes),
        compiler_options=layers.compiler_options())

  def initial_state(self):
    return create_train_state(self.model, self.tx, self.data.input_shape,
                              jax.random.key(self.config.seed),
                              self.replicated)

  def global_batch(self, local_batch):
    return jax.tree.map(
        lambda x: jax.make_array_from_process_local_data(
            self.batch_sharding, x), local_batch)

  def evaluate(self, variables):
    """{split: {'accuracy', 'loss', 'confusion'}} over every eval split."""
    results = {}
    for split, dataset in self.data.evals.items():
      totals = None
      for batch in dataset:
        out = self.eval_step(variables, self.global_batch(batch))
        totals = out if totals is None else jax.tree.map(jnp.add, totals, out)
      totals = jax.device_get(totals)
      confusion = np.rint(totals['confusion']).astype(int)
      results[split] = {
          'accuracy': metrics_lib.accuracy(confusion),
          'loss': float(totals['loss'] / max(confusion.sum(), 1)),
          'confusion': confusion.tolist(),
      }
    return results

  def checkpoints(self, workdir):
    return checkpoint.manager(workdir, self.config.keep_checkpoints,
                              track_best=bool(self.config.selection_split))


def _log(message):
  if jax.process_index() == 0:
    tqdm.tqdm.write(message)


def _format(results):
  return ', '.join(f"{split} {r['accuracy']:.2%}" for split, r in
                   results.items())


def check_workdir(mngr, config, workdir):
  """Refuses a workdir whose checkpoints belong to another model or data."""
  step = mngr.latest_step()
  if step is None:
    return None
  saved = checkpoint.restore_run(mngr, step)['config']
  for key in ('model', 'data.name'):
    ours = functools.reduce(lambda c, k: c[k], key.split('.'),
                            config.to_dict())
    theirs = functools.reduce(lambda c, k: c[k], key.split('.'), saved)
    if json.dumps(ours, sort_keys=True) != json.dumps(theirs, sort_keys=True):
      raise ValueError(
          f'{workdir} holds checkpoints of config.{key}={theirs}, not '
          f'{ours}: use another --workdir')
  return step


def selected(history, selection_split):
  """The history entry chosen by `selection_split` (else the last one)."""
  if not selection_split:
    return history[-1]
  # Ties go to the later epoch, as orbax's best-checkpoint policy breaks them.
  return max(history, key=lambda h: (h['eval'][selection_split]['accuracy'],
                                     h['step']))


def summary(history, selection_split):
  """Final report lines: the selected epoch, and the papers' optimistic way."""
  chosen = selected(history, selection_split)
  how = (f'best {selection_split} accuracy' if selection_split else
         'last epoch, no selection split')
  lines = [f"Selected epoch {chosen['epoch']} ({how}, checkpoint step "
           f"{chosen['step']}): {_format(chosen['eval'])}"]
  for split in chosen['eval']:
    if split == selection_split:
      continue
    best = max(history, key=lambda h: h['eval'][split]['accuracy'])
    lines.append(
        f"Best epoch on {split} itself, as the papers select (optimistic): "
        f"{best['eval'][split]['accuracy']:.2%} at epoch {best['epoch']}")
  return lines


def train_and_evaluate(config, workdir):
  """Trains, evaluating and checkpointing each epoch; resumes from workdir."""
  ex = Experiment(config)
  mngr = ex.checkpoints(workdir)
  start = check_workdir(mngr, config, workdir)
  state = ex.initial_state()
  train_iter = iter(ex.data.train)
  history = []
  if start is None and config.model.get('init_from'):
    state = start_from(state, ex.model, config.model.init_from, ex.replicated)
  if start is not None:
    state, train_iter = checkpoint.restore_train(mngr, start, state,
                                                 train_iter)
    history = checkpoint.restore_run(mngr, start)['history']
    _log(f'Resumed from {workdir} at step {start}.')
  start = start or 0
  writer = metrics_lib.MetricWriter(workdir, resume_step=start)
  step_fn = jax.jit(
      functools.partial(train_step, model=ex.model, tx=ex.tx, lr_fn=ex.lr_fn,
                        class_weights=ex.data.class_weights),
      donate_argnums=0, compiler_options=layers.compiler_options())
  rng = jax.random.key(config.seed + 1)
  pending = []  # (step, device metrics) not yet fetched

  def flush():
    # The one host sync between evaluations: at log boundaries.
    fetched = jax.device_get([m for _, m in pending])
    for (step, _), m in zip(pending, fetched):
      if not np.isfinite(m['loss']):
        mngr.wait_until_finished()
        raise FloatingPointError(
            f'loss is {m["loss"]} at step {step}; stopped. The last good '
            f'checkpoint (step {mngr.latest_step()}) is kept in {workdir}.')
    means = {k: float(np.mean([m[k] for m in fetched])) for k in fetched[0]}
    writer.write(pending[-1][0], {f'train/{k}': v for k, v in means.items()})
    pending.clear()
    return means

  bar = tqdm.tqdm(total=ex.total_steps, initial=start, unit='step',
                  disable=jax.process_index() != 0)
  for step in range(start + 1, ex.total_steps + 1):
    state, step_metrics = step_fn(state, ex.global_batch(next(train_iter)),
                                  rng)
    pending.append((step, step_metrics))
    bar.update()
    end_of_epoch = step % ex.steps_per_epoch == 0
    if step % config.log_every == 0 or end_of_epoch:
      means = flush()
      bar.set_postfix(loss=f"{means['loss']:.3f}",
                      acc=f"{means['accuracy']:.3f}")
    if end_of_epoch:
      epoch = step // ex.steps_per_epoch
      results = ex.evaluate({'params': state.params,
                             'batch_stats': state.batch_stats})
      history.append({'epoch': epoch, 'step': step, 'eval': results})
      writer.write(step, {f'{split}/{k}': v for split, r in results.items()
                          for k, v in r.items()})
      _log(f'epoch {epoch}/{config.epochs} step {step}: '
           f'{config.data.eval_crop}-crop accuracy {_format(results)}')
      selection = (results[config.selection_split]['accuracy']
                   if config.selection_split else None)
      checkpoint.save(mngr, step, state, train_iter,
                      {'config': config.to_dict(), 'history': history},
                      selection)
  bar.close()
  mngr.wait_until_finished()
  writer.close()
  if history:
    for line in summary(history, config.selection_split):
      _log(line)
  return state, history


def evaluate(config, workdir, step=None):
  """Evaluates a saved checkpoint (default: the selected one), no optimizer."""
  ex = Experiment(config)
  mngr = ex.checkpoints(workdir)
  latest = check_workdir(mngr, config, workdir)
  if latest is None:
    raise FileNotFoundError(f'no checkpoint in {workdir}/checkpoints')
  if step is None:
    history = checkpoint.restore_run(mngr, latest)['history']
    step = selected(history, config.selection_split)['step']
  abstract = jax.eval_shape(ex.initial_state)  # shapes and shardings only
  variables = checkpoint.restore_model(
      mngr, step, {'params': abstract.params,
                   'batch_stats': abstract.batch_stats})
  results = ex.evaluate(variables)
  _log(f'checkpoint step {step}: {config.data.eval_crop}-crop accuracy '
       f'{_format(results)}')
  return results
