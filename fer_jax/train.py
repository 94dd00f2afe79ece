"""Training and evaluation loops: `train_and_evaluate` and `evaluate`.

One code path for one device or many: the state is replicated and the batch
sharded on the `data` axis of a mesh over all devices (of all processes), and
`jax.jit` partitions the step. BatchNorm therefore normalises over the global
batch, as on one device.
"""
import functools
import json
import numbers
import os
import time
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
from fer_jax import errors
from fer_jax import files
from fer_jax import ldl
from fer_jax import metrics as metrics_lib
from fer_jax import models
from fer_jax import teacher as teacher_lib
from fer_jax import workdir as workdir_lib
from fer_jax.data import pipeline
from fer_jax.models import cpu_conv


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
  raise errors.UserError(f"config.schedule.name={s.name!r}: expected "
                         "'constant', 'step' or 'cosine'")


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
    raise errors.UserError(f"config.optimizer.name={o.name!r}: expected 'sgd' "
                           "or 'adam'")
  return optax.chain(*chain)


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


def training_loss(params, batch_stats, batch, rng, target=None, *, model,
                  class_weights=None, reduction=None):
  """What `train_step` differentiates: the batch's mean loss in training mode
  (dropout from `rng`, batch statistics), with (float32 logits, the updated
  running statistics). `target`: distributions to learn (fer_jax.ldl, with
  its `reduction`) instead of the labels."""
  logits, updates = model.apply(
      {'params': params, 'batch_stats': batch_stats}, batch['image'],
      train=True, rngs={'dropout': rng}, mutable=['batch_stats'])
  logits = loss_precision(logits)
  if target is None:
    loss = optax.softmax_cross_entropy_with_integer_labels(logits,
                                                           batch['label'])
  else:
    loss = ldl.per_image_loss(logits, target, reduction)
  if class_weights is not None:
    loss = loss * jnp.asarray(class_weights)[batch['label']]
  return loss.mean(), (logits, updates.get('batch_stats', {}))


def train_step(state, batch, rng, teacher_variables=None, *, model, tx, lr_fn,
               class_weights=None, teacher=None, ldl_config=None):
  """One SGD step on a global batch; returns the new state and scalars.

  `class_weights` (one per class, or None) weight each image's loss by its
  label's weight. With a `teacher` (fer_jax.teacher, its variables an
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
          class_weights=class_weights, reduction=reduction)
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


def eval_step(variables, batch, teacher_variables=None, *, model, num_classes,
              teacher=None, temperature=1.0):
  """Masked confusion matrix and loss sum, and each image's probabilities;
  with a teacher, the masked sums of each `ldl.DISTANCES` between its
  (crop-averaged, T-softened) distribution and the student's."""
  logits = crop_averaged_logits(variables, batch['image'], model=model)
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


def _weights(path):
  """(numpy variables, model fields) of a `fer_jax.convert` output, or of a
  training run's workdir (its selected checkpoint, restored onto this
  process's device whatever device or process count wrote it)."""
  if os.path.isdir(os.path.join(path, 'checkpoints')):
    from fer_jax import predict  # pylint: disable=g-import-not-at-top
    run = predict.Predictor.from_workdir(path, 'selected')
    fields = {k: v for k, v in run.config.model.items() if k != 'init_from'}
    return jax.device_get(run.variables), fields
  return convert.load(path)


def start_from(state, model, path, sharding):
  """`state` with the weights at `path`: a `fer_jax.convert` output or
  another run's workdir (`_weights`).

  Every variable is taken from there except a classifier whose class count
  differs, which keeps its fresh initialisation.
  """
  loaded, fields = _weights(path)
  for key, value in fields.items():
    ours = getattr(model, key, None)
    if key not in ('num_classes', 'name') and ours != value:
      raise errors.UserError(
          f'config.model.{key}={ours!r}, but the weights in '
          f'{path} need {value!r}')
  kept = []

  def take(path_, fresh):
    keys = tuple(k.key for k in path_)
    node = loaded
    for key in keys:
      if key not in node:
        raise errors.UserError(
            f'{path} has no {"/".join(keys)}: not weights of '
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


def _require(config, key, ok, expected):
  value = functools.reduce(lambda c, k: c[k], key.split('.'), config)
  if not ok(value):
    raise errors.UserError(f'config.{key}={value!r}: expected {expected}')


def _integer(value):
  return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _number(value):
  return (isinstance(value, numbers.Real) and not isinstance(value, bool)
          and np.isfinite(value))


def validate(config, training=True):
  """Rejects values that would fail deep inside or silently change training,
  with the key and what was expected (`test_train.py::
  test_bad_config_value_names_the_key`). Evaluation selects with the saved
  run's selection split, so its own may be missing from its eval splits."""
  for key in ('batch_size', 'eval_batch_size', 'epochs', 'log_every',
              'keep_checkpoints', 'data.crop', 'data.threads'):
    _require(config, key, lambda v: _integer(v) and v > 0,
             'a positive integer')
  for key in ('data.holdout', 'data.workers', 'data.cutout_holes',
              'data.cutout_length'):
    _require(config, key, lambda v: _integer(v) and v >= 0,
             'an integer >= 0')
  if config.data.cutout_holes:
    _require(config, 'data.cutout_length', lambda v: v > 0,
             'a positive side length when config.data.cutout_holes > 0')
  _require(config, 'data.crop_scale',
           lambda v: (isinstance(v, (tuple, list)) and len(v) == 2
                      and all(map(_number, v)) and 0 < v[0] <= v[1] <= 1),
           '(low, high) with 0 < low <= high <= 1')
  _require(config, 'optimizer.lr', lambda v: _number(v) and v > 0,
           'a positive number')
  _require(config, 'optimizer.momentum', lambda v: _number(v) and 0 <= v < 1,
           'a number in [0, 1)')
  for key in ('optimizer.weight_decay', 'optimizer.clip'):
    _require(config, key, lambda v: _number(v) and v >= 0, 'a number >= 0')
  if config.schedule.name == 'step':
    _require(config, 'schedule.decay_every', lambda v: _integer(v) and v > 0,
             'a positive number of epochs')
    _require(config, 'schedule.decay_start', lambda v: _integer(v) and v >= 0,
             'an epoch >= 0')
    _require(config, 'schedule.decay_rate', lambda v: _number(v) and 0 < v <= 1,
             'a factor in (0, 1]')
  for key in ('batch_size', 'eval_batch_size'):
    if config[key] % jax.device_count():
      raise errors.UserError(
          f'config.{key}={config[key]} does not divide by the '
          f'{jax.device_count()} devices: the batch size is global')
  _require(config, 'dtype', lambda v: v in models.DTYPES,
           f'one of {models.DTYPES}')
  _require(config, 'data.eval_crop', lambda v: v in ('ten', 'centre'),
           "'ten' or 'centre'")
  _require(config, 'data.extra_train', lambda v: isinstance(v, (
      tuple, list)) and all(isinstance(n, str) and n for n in v),
           'a tuple of stylised dataset names')
  _require(config, 'ldl.teacher', lambda v: v is None or (
      isinstance(v, str) and v), 'None or the path of a teacher')
  _require(config, 'ldl.temperature', lambda v: _number(v) and v > 0,
           'a temperature > 0')
  _require(config, 'ldl.onehot_weight', lambda v: _number(v) and 0 <= v <= 1,
           'a weight (lambda) in [0, 1]')
  _require(config, 'ldl.reduction', lambda v: v in ldl.REDUCTIONS,
           f'one of {ldl.REDUCTIONS}')
  selection = config.selection_split
  if training and selection and selection not in config.data.eval_splits:
    raise errors.UserError(
        f'config.selection_split={selection!r}: not one of '
        f'config.data.eval_splits={tuple(config.data.eval_splits)}')


class Experiment:
  """What training and evaluation share: mesh, data, model, jitted steps."""

  def __init__(self, config, training=True):
    validate(config, training)
    self.config = config
    self.mesh = Mesh(jax.devices(), ('data',))
    self.replicated = NamedSharding(self.mesh, P())
    self.batch_sharding = NamedSharding(self.mesh, P('data'))
    # Evaluation needs no stylised training copies (nor their files).
    self.data = pipeline.load(config.data, config.batch_size,
                              config.eval_batch_size, config.seed,
                              extra_train=training)
    self.steps_per_epoch = self.data.train_size // config.batch_size
    if not self.steps_per_epoch:
      raise errors.UserError(
          f'config.batch_size={config.batch_size}: larger than '
          f'the {self.data.train_size} training images')
    self.total_steps = config.epochs * self.steps_per_epoch
    num_classes = len(self.data.class_names)
    self.model = models.create(config.model, num_classes, config.dtype)
    self.lr_fn = learning_rate_fn(config, self.steps_per_epoch)
    self.tx = create_optimizer(config, self.lr_fn)
    self.teacher, self.teacher_variables = None, None
    if config.ldl.teacher:
      self.teacher = teacher_lib.load(
          config.ldl.teacher, self.data.class_names, self.data.input_shape,
          config.data, log=_log)
      self.teacher_variables = jax.device_put(self.teacher.variables,
                                              self.replicated)
    self.eval_step = jax.jit(
        functools.partial(eval_step, model=self.model,
                          num_classes=num_classes, teacher=self.teacher,
                          temperature=config.ldl.temperature),
        compiler_options=cpu_conv.compiler_options())

  def initial_state(self, abstract=False):
    return create_train_state(self.model, self.tx, self.data.input_shape,
                              jax.random.key(self.config.seed),
                              self.replicated, abstract)

  def global_batch(self, local_batch):
    return jax.tree.map(
        lambda x: jax.make_array_from_process_local_data(
            self.batch_sharding, x), local_batch)

  def evaluate(self, variables, predictions=False):
    """{split: {'accuracy', 'loss', 'confusion'}} over every eval split.

    With `predictions`, each split's result also holds 'predictions':
    (index in the split, label, probabilities) of every image, in order.
    """
    results = {}
    for split, dataset in self.data.evals.items():
      totals, images = None, []
      for batch in dataset:
        batch = self.global_batch(batch)
        out = self.eval_step(variables, batch, self.teacher_variables)
        if predictions:
          images.append({'index': batch['index'], 'label': batch['label'],
                         'mask': batch['mask'],
                         'probabilities': out['probabilities']})
        del out['probabilities']
        totals = out if totals is None else jax.tree.map(jnp.add, totals, out)
      totals = jax.device_get(totals)
      confusion = np.rint(totals['confusion']).astype(int)
      count = max(confusion.sum(), 1)
      results[split] = {
          'accuracy': metrics_lib.accuracy(confusion),
          'loss': float(totals['loss'] / count),
          'confusion': confusion.tolist(),
      }
      if self.teacher is not None:  # student against teacher, per image
        results[split].update({name: float(totals[name] / count)
                               for name in ldl.DISTANCES})
      if predictions:
        results[split]['predictions'] = _per_image(images)
    return results

  def checkpoints(self, workdir):
    return checkpoint.manager(workdir, self.config.keep_checkpoints,
                              track_best=bool(self.config.selection_split))


def _per_image(batches):
  """[(index, label, probabilities)] sorted by index, padding left out."""
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  gathered = multihost_utils.process_allgather(batches, tiled=True)
  rows = [(int(i), int(label), p.tolist())
          for b in gathered
          for i, label, keep, p in zip(b['index'], b['label'], b['mask'],
                                       b['probabilities']) if keep]
  return sorted(rows)


def _log(message):
  if jax.process_index() == 0:
    tqdm.tqdm.write(message)


def _format(results):
  return ', '.join(f"{split} {r['accuracy']:.2%}" for split, r in
                   results.items())


def resume(ex, workdir, state, train_iter):
  """(manager, step, state, iterator, run record) from the latest intact
  checkpoint of the same run; step None, the inputs and an empty record on a
  fresh workdir.

  A damaged checkpoint is moved aside (see `checkpoint.set_aside`) and the
  one before it taken; a checkpoint of another run is refused.
  """
  mngr = ex.checkpoints(workdir)
  while (step := mngr.latest_step()) is not None:
    try:
      run = checkpoint.restore_run(mngr, step)
      note = workdir_lib.check_same_run(run['config'], ex.config.to_dict(),
                                        workdir, 'train')
      teacher_lib.check_same(run.get('teacher'), ex.teacher, workdir)
      writers = checkpoint.saved_process_count(mngr, step)
      if writers not in (None, jax.process_count()):
        raise errors.UserError(
            f'{workdir} was trained by {writers} process(es) and this run has '
            f'{jax.process_count()}: its data position is saved per process. '
            f'Resume it with {writers}, or start a new run from its weights '
            f'with --config.model.init_from={workdir}')
      state, train_iter = checkpoint.restore_train(mngr, step, state,
                                                   train_iter, run)
    except checkpoint.DamagedError as e:
      if jax.process_index() == 0:
        moved = checkpoint.set_aside(mngr, step)
        _log(f'{e}; moved to {moved}, trying the checkpoint before it.')
      pipeline.sync_processes(f'set aside {step}')
      mngr = ex.checkpoints(workdir)
      continue
    _log(note or f'Resumed from {workdir} at step {step}.')
    return mngr, step, state, train_iter, run
  return mngr, None, state, train_iter, {'history': []}


def _last_good(mngr, workdir):
  step = mngr.latest_step()
  if step is None:
    return f'No checkpoint was saved before it: {workdir} has none to resume.'
  return f'The last good checkpoint (step {step}) is kept in {workdir}.'


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
  for split, r in chosen['eval'].items():
    if 'kl' in r:
      lines.append(f'Student against teacher on {split} at the selected '
                   f'epoch: {_distances(r)}')
  return lines


def _distances(result):
  return ', '.join(f'{name} {result[name]:.4f}' for name in ldl.DISTANCES)


def train_and_evaluate(config, workdir, config_file=None):
  """Trains, evaluating and checkpointing each epoch; resumes from workdir.

  `config_file`, the file `config` came from (launch.py's --config), is
  recorded for `fer_jax.report`'s config diff.
  """
  ex = Experiment(config)
  with workdir_lib.lock(workdir):
    return _train(ex, workdir, config_file)


def _train(ex, workdir, config_file):
  config = ex.config
  mngr, start, state, train_iter, run = resume(
      ex, workdir, ex.initial_state(), iter(ex.data.train))
  history = run['history']
  # Each process start that trains is a session: where, and for how long.
  session = {'started': time.strftime('%Y-%m-%d %H:%M:%S'),
             'first_step': (start or 0) + 1,
             'hardware': workdir_lib.hardware()}
  sessions = run.get('sessions', []) + [session]
  session_start = time.monotonic()
  if start is None and config.model.get('init_from'):
    state = start_from(state, ex.model, config.model.init_from, ex.replicated)
  start = start or 0
  if ex.data.train_note:
    _log(ex.data.train_note)
  writer = metrics_lib.MetricWriter(workdir, resume_step=start)
  step_fn = jax.jit(
      functools.partial(train_step, model=ex.model, tx=ex.tx, lr_fn=ex.lr_fn,
                        class_weights=ex.data.class_weights,
                        teacher=ex.teacher, ldl_config=config.ldl),
      donate_argnums=0, compiler_options=cpu_conv.compiler_options())
  rng = jax.random.key(config.seed + 1)
  pending = []  # (step, device metrics) not yet fetched

  def flush():
    # The one host sync between evaluations: at log boundaries.
    fetched = jax.device_get([m for _, m in pending])
    for (step, _), m in zip(pending, fetched):
      if not np.isfinite(m['loss']):
        raise errors.DivergedError(
            f'loss is {m["loss"]} at step {step}; stopped. '
            + _last_good(mngr, workdir))
    means = {k: float(np.mean([m[k] for m in fetched])) for k in fetched[0]}
    writer.write(pending[-1][0], {f'train/{k}': v for k, v in means.items()})
    pending.clear()
    return means

  # Closed on errors too, so that their one line starts a line.
  with tqdm.tqdm(total=ex.total_steps, initial=start, unit='step',
                 disable=jax.process_index() != 0) as bar:
    for step in range(start + 1, ex.total_steps + 1):
      state, step_metrics = step_fn(state, ex.global_batch(next(train_iter)),
                                    rng, ex.teacher_variables)
      pending.append((step, step_metrics))
      bar.update()
      end_of_epoch = step % ex.steps_per_epoch == 0
      if step % config.log_every == 0 or end_of_epoch:
        means = flush()
        bar.set_postfix(loss=f"{means['loss']:.3f}",
                        acc=f"{means['accuracy']:.3f}")
      if end_of_epoch:
        # A finite loss can hide infinite BatchNorm variances or huge weights;
        # such a state is never saved as a checkpoint to go back to.
        if not checkpoint.all_finite(state):
          raise errors.DivergedError(
              f'parameters, BatchNorm statistics or optimizer state are not '
              f'finite after step {step}; stopped without saving it. '
              + _last_good(mngr, workdir))
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
        session.update(last_step=step,
                       seconds=round(time.monotonic() - session_start, 1))
        checkpoint.save(mngr, step, state, train_iter,
                        {'config': config.to_dict(), 'history': history,
                         'config_file': config_file or run.get('config_file'),
                         'sessions': sessions,
                         'data': {'class_names': list(ex.data.class_names),
                                  'image_shape': list(ex.data.image_shape)},
                         'teacher': ex.teacher and ex.teacher.identity},
                        selection)
  writer.close()
  if history:
    for line in summary(history, config.selection_split):
      _log(line)
    chosen = selected(history, config.selection_split)
    if jax.process_index() == 0:
      for split, result in chosen['eval'].items():
        write_report(workdir, split, result, ex.data.class_names,
                     chosen['step'],
                     'selected' if config.selection_split else 'latest',
                     config.data.eval_crop)
  return state, history


def _latest_run(mngr, steps):
  """The run record of the latest checkpoint whose record is readable."""
  for step in reversed(steps):
    try:
      return checkpoint.restore_run(mngr, step)
    except checkpoint.DamagedError as e:
      _log(f'{e}; reading the run record of the checkpoint before it.')
  raise errors.UserError(f'no readable checkpoint in {mngr.directory}')


def find_checkpoint(mngr, workdir, checkpoint_step='selected'):
  """(step, run record) of the checkpoint to read: `checkpoint_step` is
  'selected' (by the run's own selection split), 'latest' or a step."""
  steps = mngr.all_steps()
  if not steps:
    raise errors.MissingError(f'no checkpoint in {workdir}/checkpoints: '
                              'train first, or check the workdir')
  run = _latest_run(mngr, steps)
  if checkpoint_step == 'selected':
    step = selected(run['history'], run['config']['selection_split'])['step']
  elif checkpoint_step == 'latest':
    step = steps[-1]
  else:
    step = int(checkpoint_step)
  if step not in steps:
    raise errors.UserError(f'--checkpoint={checkpoint_step}: no step {step} '
                           f'in {workdir}/checkpoints; it holds {steps}')
  return step, run


def restore_variables(mngr, step, abstract):
  """{'params', 'batch_stats'} of a checkpoint, shaped and sharded like
  `abstract`; a damaged one names the others to read instead."""
  try:
    return checkpoint.restore_model(mngr, step, abstract)
  except checkpoint.DamagedError as e:
    others = [s for s in mngr.all_steps() if s != step]
    raise errors.UserError(
        f'{e}; read another with --checkpoint=STEP, one of {others}'
        if others else f'{e}; no other checkpoint to read') from e


def _write_eval_file(workdir, name, lines):
  """workdir/eval/name, written to a temporary name, then renamed."""
  files.write(os.path.join(workdir, 'eval', name), lines)


def write_predictions(workdir, split, rows, class_names):
  """eval/<split>_predictions.jsonl: index in the split, label, class
  probabilities of every image."""
  _write_eval_file(workdir, f'{split}_predictions.jsonl', (
      json.dumps({'index': index, 'label': class_names[label],
                  'probabilities': dict(zip(class_names, probabilities))})
      + '\n' for index, label, probabilities in rows))


def write_report(workdir, split, result, class_names, step, which, crop):
  """eval/<split>.json: the checkpoint (`which`: 'selected', 'latest' or
  'step', and its step), crop mode, loss, `metrics.report`'s accuracy,
  per-class and averaged precision/recall/F1 and confusion matrices, and for
  an LDL run the distances to the teacher."""
  record = {'split': split, 'checkpoint': which, 'step': int(step),
            'crop': crop, 'loss': result['loss'],
            **metrics_lib.report(result['confusion'], class_names)}
  if 'kl' in result:
    record['teacher_distances'] = {name: result[name]
                                   for name in ldl.DISTANCES}
  _write_eval_file(workdir, f'{split}.json', [json.dumps(record, indent=1)])


def read_report(workdir, split):
  """eval/<split>.json as `write_report` wrote it; None if there is none."""
  path = os.path.join(workdir, 'eval', f'{split}.json')
  try:
    with open(path) as f:
      return json.load(f)
  except FileNotFoundError:
    return None
  except ValueError as e:
    raise errors.UserError(
        f'{path}: not an evaluation record ({e}); write it again with '
        'launch.py --mode=eval (or delete it)') from e


def evaluate(config, workdir, checkpoint_step='selected'):
  """Evaluates a saved checkpoint, no optimizer (see `find_checkpoint`), and
  writes each split's metrics and per-image predictions (`write_report`,
  `write_predictions`)."""
  ex = Experiment(config, training=False)
  mngr = ex.checkpoints(workdir)
  step, run = find_checkpoint(mngr, workdir, checkpoint_step)
  workdir_lib.check_same_run(run['config'], config.to_dict(), workdir, 'eval')
  teacher_lib.check_same(run.get('teacher'), ex.teacher, workdir)
  abstract = ex.initial_state(abstract=True)
  variables = restore_variables(
      mngr, step, {'params': abstract.params,
                   'batch_stats': abstract.batch_stats})
  results = ex.evaluate(variables, predictions=True)
  which = (checkpoint_step if checkpoint_step in ('selected', 'latest')
           else 'step')
  if jax.process_index() == 0:
    for split, result in results.items():
      write_predictions(workdir, split, result.pop('predictions'),
                        ex.data.class_names)
      write_report(workdir, split, result, ex.data.class_names, step, which,
                   config.data.eval_crop)
  _log(f'checkpoint step {step}: {config.data.eval_crop}-crop accuracy '
       f'{_format(results)}')
  for split, r in results.items():
    if 'kl' in r:
      _log(f'Student against teacher on {split}: {_distances(r)}')
  return results
