"""A workdir holds one run: the saved config is its identity, and one
training process (group) writes to it at a time.

Identity. Resuming or evaluating compares the config with the one saved in
the checkpoint. Every field must match except those that do not change what
the run is: where the data is read from and how fast (`data.data_dir`,
`data.workers`, `data.threads`), how often to log, how many checkpoints to
keep, the evaluation batch size; for `--mode=eval` also what only evaluation
reads (`data.eval_crop`, `data.eval_splits`, `epochs`). Training may raise
`epochs` to extend a run; a cosine schedule's remaining steps are then
recomputed over the new total, and the log says so. Anything else (a fold,
holdout, crop, augmentation, seed, optimizer, schedule, model) is another
run: refused with each differing key and both values. The device and process
count are not in the config and may change.

Lock. Training holds `workdir/lock` (an flock, which the kernel releases when
the process dies, so a killed run never leaves it stuck); a second training
run in a busy workdir is refused. Process 0 takes it for a multi-process run.
Evaluation, prediction and reports only read and take no lock.
"""
import contextlib
import datetime
import fcntl
import json
import os
import platform
import socket

import jax
import numpy as np

from fer_jax import errors

# ldl.teacher is a path: the teacher's identity is its content, compared by
# `teacher.check_same` instead.
MAY_DIFFER = ('data.data_dir', 'data.workers', 'data.threads', 'log_every',
              'keep_checkpoints', 'eval_batch_size', 'ldl.teacher')
MAY_DIFFER_IN_EVAL = MAY_DIFFER + ('data.eval_crop', 'data.eval_splits',
                                   'epochs', 'dtype')
_ABSENT = '<absent>'
# Fields added after runs were saved without them: absent means this value,
# the behaviour those runs had.
ADDED = {'dtype': 'float32', 'data.extra_train': [], 'ldl.teacher': None,
         'ldl.temperature': 1.0, 'ldl.onehot_weight': 0.0,
         'ldl.reduction': 'class_mean', 'selection_metric': 'accuracy',
         'loss.label_smoothing': 0.0, 'loss.logit_adjustment': 0.0,
         'data.rotation': 0.0, 'data.scale': [1.0, 1.0],
         'data.translation': 0.0, 'data.brightness': 0.0,
         'data.contrast': 0.0, 'data.gamma': 0.0, 'data.erasing': 0.0,
         'data.erasing_area': [0.02, 0.33]}


def flatten(tree, prefix=''):
  flat = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      flat.update(flatten(value, f'{prefix}{key}.'))
    else:
      flat[f'{prefix}{key}'] = value
  return flat


def _plain(config_dict):
  """JSON's view of a config (tuples as lists), as the checkpoint holds it."""
  return json.loads(json.dumps(config_dict))


def differences(saved, config, may_differ=()):
  """{key: (saved value, new value)} of the fields outside `may_differ`."""
  saved, config = ({**ADDED, **flatten(_plain(c))} for c in (saved, config))
  return {key: (saved.get(key, _ABSENT), config.get(key, _ABSENT))
          for key in sorted(set(saved) | set(config))
          if key not in may_differ
          and saved.get(key, _ABSENT) != config.get(key, _ABSENT)}


def check_same_run(saved, config, workdir, mode):
  """Raises a UserError unless `config` continues the run saved in workdir.

  `saved` and `config` are config dicts; mode 'train' or 'eval'. Returns a
  line for the log when training extends the run, else None.
  """
  differ = differences(saved, config,
                       MAY_DIFFER_IN_EVAL if mode == 'eval' else MAY_DIFFER)
  epochs = differ.pop('epochs', None)
  if epochs is not None and epochs[1] < epochs[0]:
    differ['epochs'] = epochs
  if differ:
    listed = '; '.join(f'config.{key}={new!r} (the run has {old!r})'
                       for key, (old, new) in differ.items())
    raise errors.UserError(
        f'{workdir} holds another run: {listed}. Use another --workdir '
        '(or the saved values to resume or evaluate this one)')
  if epochs is None:
    return None
  line = (f'Extending the run in {workdir} from {epochs[0]} to {epochs[1]} '
          'epochs')
  if config['schedule']['name'] == 'cosine':
    line += ('; the cosine schedule of the remaining steps is recomputed '
             f'over {epochs[1]} epochs')
  return line + '.'


def hardware():
  """Where this process trains, for the run record: processes, devices,
  device kind, JAX version, and the host's CPU model."""
  cpu = platform.processor() or platform.machine()
  try:
    with open('/proc/cpuinfo') as f:
      cpu = next((line.split(':', 1)[1].strip() for line in f
                  if line.startswith('model name')), cpu)
  except OSError:
    pass
  device = jax.devices()[0]
  return {'processes': jax.process_count(), 'devices': jax.device_count(),
          'platform': device.platform, 'device_kind': device.device_kind,
          'cpu': cpu, 'cpu_count': os.cpu_count(),
          'jax': jax.__version__, 'host': socket.gethostname()}


def _holder(path):
  try:
    with open(path) as f:
      return f.read().strip() or 'another process'
  except OSError:
    return 'another process'


@contextlib.contextmanager
def lock(workdir, user='training run'):
  """Exclusive use of `workdir` by one `user` while the block runs."""
  handle, error = None, None
  if jax.process_index() == 0:
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, 'lock')
    handle = open(path, 'a+')  # pylint: disable=consider-using-with
    try:
      fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      handle.close()
      handle = None
      error = (f'{workdir} is in use by another {user} '
               f'({_holder(path)}): wait for it to end or use another '
               'directory')
    else:
      handle.truncate(0)
      handle.write(f'pid {os.getpid()} on {socket.gethostname()} since '
                   f'{datetime.datetime.now():%Y-%m-%d %H:%M:%S}\n')
      handle.flush()
  if jax.process_count() > 1:
    # Every process of the run stops if process 0 could not take the lock.
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    if multihost_utils.broadcast_one_to_all(np.int32(error is not None)):
      error = error or f'{workdir} is in use by another {user}'
  if error:
    raise errors.UserError(error)
  try:
    yield
  finally:
    if handle is not None:
      handle.close()  # releases the flock
