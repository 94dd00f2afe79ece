"""The one loader of a trained model from a path: `load(path)`.

A path is any of
- a training run's workdir (`checkpoints/`): its selected checkpoint, by the
  run's own selection split (or 'latest', or a step), restored onto this
  process's device whatever device or process count wrote it;
- a .msgpack file exported by `fer_jax.export` (the shipped model is one): the
  run's config, class names, stored image shape and variables in one
  msgpack;
- a `fer_jax.convert` output (`model.json`, `variables/`, and `data.json`
  with the class names and input when the source had them).

Every caller goes through it: `config.model.init_from` (`train.start_from`),
the LDL teacher (`fer_jax.teacher`), `fer_jax.predict.Predictor` and
`fer_jax.export`, so that what one accepts all accept
(`tests/test_weights.py`).
"""
import dataclasses
import json
import os

import flax.serialization
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from fer_jax import checkpoint
from fer_jax import convert
from fer_jax import errors
from fer_jax import models

# The FER2013 model that ships inside the package (`fer_jax.export`
# writes it; `fer_jax.predict` uses it by default).
SHIPPED = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                       'pretrained', 'fer2013.msgpack')
# A run's post-hoc logit adjustment, in its workdir (fer_jax.logit_adjustment).
LOGIT_ADJUSTMENT = 'logit_adjustment.json'

@dataclasses.dataclass(frozen=True)
class Weights:
  """A trained model as read from a path, its variables as numpy."""
  variables: dict  # {'params', 'batch_stats'}
  model: dict  # config.model's fields (name, width, ...), without init_from
  num_classes: int
  # What it expects: {'class_names', 'input_shape', 'augment', 'mean',
  # 'std'}; None for converted weights that were given no class names.
  expected: dict | None
  config: ml_collections.ConfigDict | None  # the run's; None if converted
  image_shape: tuple | None  # as its dataset stores images
  step: int | None  # the checkpoint's, for a workdir
  what: str  # for the log: which kind, which checkpoint
  # Added to the logits wherever the model is used: a post-hoc logit
  # adjustment (-tau log prior per class), None for none; `tau` its tau.
  logit_shift: np.ndarray | None = None
  tau: float = 0.0

  @property
  def class_names(self):
    return tuple(self.expected['class_names']) if self.expected else None


def selected(history, selection_split, metric='accuracy'):
  """The history entry with the best `metric` on `selection_split` (else
  the last one)."""
  if not selection_split:
    return history[-1]
  # Ties go to the later epoch, as orbax's best-checkpoint policy breaks them.
  return max(history, key=lambda h: (h['eval'][selection_split][metric],
                                     h['step']))


def selection(config):
  """(split, metric) a saved run's config selects with; runs saved before
  `selection_metric` existed selected on accuracy."""
  return (config['selection_split'],
          config.get('selection_metric', 'accuracy'))


def _latest_run(mngr, steps, log):
  """The run record of the latest checkpoint whose record is readable."""
  for step in reversed(steps):
    try:
      return checkpoint.restore_run(mngr, step)
    except checkpoint.DamagedError as e:
      log(f'{e}; reading the run record of the checkpoint before it.')
  raise errors.UserError(f'no readable checkpoint in {mngr.directory}')


def find_checkpoint(mngr, workdir, checkpoint_step='selected', log=print):
  """(step, run record) of the checkpoint to read: `checkpoint_step` is
  'selected' (by the run's own selection split), 'latest' or a step."""
  steps = mngr.all_steps()
  if not steps:
    raise errors.MissingError(f'no checkpoint in {workdir}/checkpoints: '
                              'train first, or check the workdir')
  run = _latest_run(mngr, steps, log)
  if checkpoint_step == 'selected':
    step = selected(run['history'], *selection(run['config']))['step']
  elif checkpoint_step == 'latest':
    step = steps[-1]
  elif str(checkpoint_step).isdigit():
    step = int(checkpoint_step)
  else:
    raise errors.UserError(f"--checkpoint={checkpoint_step}: expected "
                           f"'selected', 'latest' or a step of {steps}")
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


def read_logit_adjustment(workdir):
  """(logit shift, tau) recorded in a run's workdir, or (None, 0.0)."""
  path = os.path.join(workdir, LOGIT_ADJUSTMENT)
  if not os.path.exists(path):
    return None, 0.0
  try:
    with open(path) as f:
      record = json.load(f)
    return np.asarray(record['logit_shift'], np.float32), float(record['tau'])
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise errors.UserError(
        f'{path}: not a logit adjustment record ({e}); write it again with '
        f'python -m fer_jax.logit_adjustment --workdir={workdir} (or delete '
        'it)') from None


def expected_input(config, class_names, image_shape):
  """What a fer_jax-trained model expects, from its run's config."""
  return {'class_names': list(class_names),
          'input_shape': [config.data.crop, config.data.crop,
                          int(image_shape[-1])],
          'augment': config.data.augment,
          'mean': config.data.get('mean'), 'std': config.data.get('std')}


def _model_fields(config):
  return {k: v for k, v in config.model.to_dict().items() if k != 'init_from'}


def _from_run(config, class_names, image_shape, variables, step, what,
              logit_shift=None, tau=0.0):
  if logit_shift is not None and len(logit_shift) != len(class_names):
    raise errors.UserError(f'{what}: a logit shift of {len(logit_shift)} '
                           f'values for {len(class_names)} classes')
  return Weights(
      variables={'params': variables['params'],
                 'batch_stats': variables.get('batch_stats', {})},
      model=_model_fields(config), num_classes=len(class_names),
      expected=expected_input(config, class_names, image_shape),
      config=config, image_shape=tuple(image_shape), step=step, what=what,
      logit_shift=logit_shift, tau=tau)


def _workdir(workdir, checkpoint_step, log):
  mngr = checkpoint.manager(workdir, keep=1, track_best=False,
                            read_only=True)
  step, run = find_checkpoint(mngr, workdir, checkpoint_step, log)
  if 'data' not in run:
    raise errors.UserError(
        f'{workdir}: its checkpoints predate the class names in the run '
        'record; train it again with this version to use it')
  config = ml_collections.ConfigDict(run['config'])
  names, image_shape = run['data']['class_names'], run['data']['image_shape']
  model = models.create(config.model, len(names))
  crop = (config.data.crop, config.data.crop, image_shape[2])
  # This process's own device: in a multi-process run (a teacher read by
  # every process) jax.devices()[0] belongs to process 0.
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  abstract = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device),
      jax.eval_shape(lambda: model.init(jax.random.key(0),
                                        jnp.zeros((1, *crop)))))
  variables = restore_variables(
      mngr, step, {'params': abstract['params'],
                   'batch_stats': abstract.get('batch_stats', {})})
  which = (f'selected on {config.selection_split}'
           if checkpoint_step == 'selected' and config.get('selection_split')
           else 'the latest' if checkpoint_step in ('selected', 'latest')
           else 'as asked')
  shift, tau = read_logit_adjustment(workdir)
  what = f'a training run, checkpoint step {step} ({which})'
  if shift is not None:
    what += f', logit adjustment tau {tau:g}'
  return _from_run(config, names, image_shape, jax.device_get(variables),
                   step, what, shift, tau)


def read_exported(path):
  """The record of a file written by `write_exported`."""
  try:
    with open(path, 'rb') as f:
      record = flax.serialization.msgpack_restore(f.read())
    shift = record.get('logit_shift')  # absent from files before it existed
    return {'config': ml_collections.ConfigDict(json.loads(record['config'])),
            'class_names': record['class_names'],
            'image_shape': record['image_shape'],
            'variables': record['variables'],
            'logit_shift': None if shift is None else np.asarray(
                shift, np.float32),
            'tau': float(record.get('tau', 0.0))}
  except (ValueError, KeyError, TypeError) as e:
    raise errors.UserError(f'{path}: not an exported fer_jax model '
                           f'({type(e).__name__}: {e})') from None


def export_record(w):
  """The msgpack bytes of a run's `Weights` (see `read_exported`)."""
  record = {'config': json.dumps(w.config.to_dict()),
            'class_names': list(w.class_names),
            'image_shape': list(w.image_shape),
            'variables': jax.tree.map(np.asarray, w.variables)}
  if w.logit_shift is not None:
    record.update(logit_shift=np.asarray(w.logit_shift, np.float32),
                  tau=w.tau)
  return flax.serialization.msgpack_serialize(record)


def _exported(path):
  record = read_exported(path)
  what = 'an exported model file'
  if record['logit_shift'] is not None:
    what += f", logit adjustment tau {record['tau']:g}"
  return _from_run(record['config'], record['class_names'],
                   record['image_shape'], record['variables'], None, what,
                   record['logit_shift'], record['tau'])


def _converted(path):
  variables, fields = convert.load(path)
  num_classes = fields.pop('num_classes')
  expected = None
  data_path = os.path.join(path, 'data.json')
  if os.path.isfile(data_path):
    with open(data_path) as f:
      expected = json.load(f)
  return Weights(variables={'params': variables['params'],
                            'batch_stats': variables.get('batch_stats', {})},
                 model=fields, num_classes=num_classes, expected=expected,
                 config=None, image_shape=None, step=None,
                 what='converted weights')


def load(path, checkpoint_step='selected', *, key='path', log=print):
  """The `Weights` at `path` (see the module doc). `key` names the flag or
  config key that gave the path, for errors; `checkpoint_step` applies to
  a workdir only."""
  if os.path.isfile(path):
    return _exported(path)
  if path == SHIPPED:
    raise errors.MissingError(
        f'{path}: missing; the shipped model comes with the package (or '
        'export one with python -m fer_jax.export --workdir=RUN '
        f'--output={path})')
  if os.path.isdir(os.path.join(path, 'checkpoints')):
    return _workdir(path, checkpoint_step, log)
  if os.path.isfile(os.path.join(path, 'model.json')):
    return _converted(path)
  raise errors.MissingError(
      f'{key}={path!r}: not a fer_jax workdir with checkpoints/, an exported '
      '.msgpack file or a fer_jax.convert output')
