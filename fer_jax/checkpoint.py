"""Orbax checkpoints of a training run, verified when read back.

A checkpoint holds four items, so that each reader restores only what it
needs: `model` (params and batch statistics: all that evaluation and
fine-tuning read), `opt` (step and optimizer state), `data` (the grain
iterator's position) and `run` (the config, the per-epoch evaluation history
and the fingerprints of `model` and `opt`, as JSON). Orbax writes each step
to a temporary folder and renames it when complete, so a run killed mid-save
leaves the previous checkpoints intact.

Integrity: every array's fingerprint (a position-weighted sum of its bits,
computed on device) is saved in `run` and compared after restoring, so a
changed element is caught instead of evaluated (any one changed element;
several only escape when their weighted changes cancel modulo 2^32, as
they do for random damage with probability 2^-32; it is a checksum against
damage, not a cryptographic hash); a file orbax cannot read is
reported the same way (`DamagedError`, naming the step).

Saves are asynchronous (orbax's): `save` copies the arrays off the device
and records the iterator's position and the run record before it returns,
then the files are written while training goes on. The next `save`, and
`wait` (at the end of training, before any report of the last good
checkpoint), wait for it, and a failed write (a full disk, say) stops the
run there with the step, the path and the reason
(`test_workdir.py::test_failed_save_stops_the_run_with_the_path_and_reason`)
instead of orbax's log lines while training runs on; a kill while a save
is being written leaves its temporary folder, never read as a checkpoint,
and the run resumes exactly from the one before
(`test_train.py::test_a_run_killed_while_a_save_is_written_resumes_exactly`).
"""
import contextlib
import logging as std_logging
import os
import re
import shutil
import sys
import traceback
import warnings
import weakref

import grain
import jax
import jax.numpy as jnp
from jax import lax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import orbax.checkpoint as ocp

from fer_jax import errors

SELECTION_METRIC = 'selection_accuracy'


class DamagedError(errors.UserError):
  """A checkpoint whose files are unreadable or differ from what was saved."""

  def __init__(self, mngr, step, reason):
    self.step = step
    super().__init__(f'checkpoint step {step} in {mngr.directory} is '
                     f'damaged ({reason})')


def _selection(metrics):
  return metrics[SELECTION_METRIC]


def manager(workdir, keep, track_best, read_only=False):
  """Keeps the last `keep` checkpoints and, if `track_best`, the best one.

  `read_only` (evaluation, prediction, reports) creates no folder and
  writes nothing, so that a mistyped workdir stays absent."""
  policies = [ocp.checkpoint_managers.LatestN(n=keep)]
  if track_best:
    policies.append(ocp.checkpoint_managers.BestN(
        get_metric_fn=_selection, n=1,
        keep_checkpoints_without_metrics=False))
  with _without_orbax_logs():  # read_only's two warnings say what we asked
    options = ocp.CheckpointManagerOptions(
        preservation_policy=ocp.checkpoint_managers.AnyPreservationPolicy(
            policies),
        best_fn=_selection if track_best else None, best_mode='max',
        create=not read_only, read_only=read_only,
        enable_async_checkpointing=not read_only,
        # The step's folders are made before `save` returns (a few mkdirs):
        # made in the background (orbax's default), a folder that cannot be
        # made leaves the writers waiting for its signal until orbax's 300 s
        # barrier timeout before the failure is reported
        # (test_workdir.py::test_a_failed_save_leaves_logging_as_it_was).
        async_options=ocp.AsyncOptions(
            create_directories_asynchronously=False))
    return ocp.CheckpointManager(
        os.path.join(os.path.abspath(workdir), 'checkpoints'),
        options=options, item_names=('model', 'opt', 'data', 'run'))


def _bits(x):
  """The bits of each element as uint32 (any dtype of at most 4 bytes)."""
  if x.dtype == jnp.bool_:
    return x.astype(jnp.uint32)
  unsigned = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32}[x.dtype.itemsize]
  return lax.bitcast_convert_type(x, unsigned).astype(jnp.uint32)


@jax.jit
def _fingerprints(tree):
  # sum_i bits_i * (2 i + 1) mod 2^32: an odd weight is invertible modulo
  # 2^32, so any change of a single element changes the sum. A swap of
  # elements i and j changes it by 2 (j - i)(bits_i - bits_j), which
  # cancels when (j - i)(bits_i - bits_j) is a multiple of 2^31: rare, not
  # impossible.
  def one(x):
    bits = _bits(x).ravel()
    weights = jnp.arange(bits.size, dtype=jnp.uint32) * 2 + 1
    return jnp.sum(bits * weights, dtype=jnp.uint32)
  return jax.tree.map(one, tree)


def fingerprints(tree):
  """{'/'-joined path: fingerprint as 8 hex digits} of every array."""
  values = jax.device_get(_fingerprints(tree))
  return {'/'.join(str(getattr(k, 'key', getattr(k, 'idx', k)))
                   for k in path): f'{int(v):08x}'
          for path, v in jax.tree_util.tree_flatten_with_path(values)[0]}


def _model(state):
  return {'params': state.params, 'batch_stats': state.batch_stats}


def _opt(state):
  return {'step': state.step, 'opt_state': state.opt_state}


class _OrbaxRecords(std_logging.Filter):
  """Drops the log records of orbax and asyncio (see `_quiet_failures`)."""

  def filter(self, record):
    return not (record.name == 'asyncio'
                or f'{os.sep}orbax{os.sep}' in record.pathname)


_ORBAX_RECORDS = _OrbaxRecords()
_ORBAX_LOGGERS = ('absl', 'asyncio')  # orbax logs through absl's logger


def _drop_orbax_records():
  """Filters orbax's records out; returns the loggers that were not
  filtered yet, for `_keep_orbax_records`."""
  added = [std_logging.getLogger(name) for name in _ORBAX_LOGGERS
           if _ORBAX_RECORDS not in std_logging.getLogger(name).filters]
  for logger in added:
    logger.addFilter(_ORBAX_RECORDS)
  return added


def _keep_orbax_records(loggers):
  for logger in loggers:
    logger.removeFilter(_ORBAX_RECORDS)


@contextlib.contextmanager
def _without_orbax_logs():
  added = _drop_orbax_records()
  try:
    yield
  finally:
    _keep_orbax_records(added)


def _is_leftover(unraisable):
  frames = traceback.extract_tb(unraisable.exc_traceback)
  return ('Event loop is closed' in str(unraisable.exc_value) or any(
      f'{os.sep}orbax{os.sep}' in f.filename
      or f'{os.sep}asyncio{os.sep}' in f.filename for f in frames))


def _forwarding(previous):
  def hook(unraisable):
    if not _is_leftover(unraisable):
      previous(unraisable)
  hook.forwards_to = previous
  return hook


@contextlib.contextmanager
def _quiet_failures():
  """Orbax's writer threads log each failed write with its traceback, and
  asyncio and tensorstore print more as the failed tasks are collected,
  some of it only at exit: hundreds of lines for one full disk, dozens for
  one damaged checkpoint read. `save` and `_restore` report the failure in
  one line instead. Only those leftovers are
  dropped (orbax's and asyncio's log records and their unraisable
  exceptions), during a save and, after a failed one, for the rest of the
  process: logging's verbosity is untouched and every other record and
  unraisable exception still reaches its handler, so that a process that
  lives on (`train_and_evaluate` in a notebook) keeps its logging
  (tests/test_workdir.py::test_a_failed_save_leaves_logging_as_it_was)."""
  restore = _quiet()
  try:
    yield
  except Exception:
    raise  # the leftovers of the failure may come at any time: kept out
  else:
    restore()


def _quiet():
  """Starts `_quiet_failures`' filtering; returns the function that ends
  it (not called after a failure)."""
  hook, filters = sys.unraisablehook, warnings.filters[:]
  warnings.filterwarnings('ignore', 'coroutine .* was never awaited')
  added = _drop_orbax_records()
  if not hasattr(hook, 'forwards_to'):
    sys.unraisablehook = _forwarding(hook)

  def restore():
    _keep_orbax_records(added)
    sys.unraisablehook = hook
    warnings.filters[:] = filters
  return restore


# The save each manager is writing in the background: (step, the function
# that ends its quiet filtering).
_IN_FLIGHT = weakref.WeakKeyDictionary()


def _write_error(mngr, step, e):
  # Orbax wraps the OSError of a full disk in its own exceptions.
  reason = str(e).strip().splitlines()[-1] if str(e).strip() else repr(e)
  return errors.UserError(
      f'could not write checkpoint step {step} to {mngr.directory}: '
      f'{reason}; the earlier checkpoints are intact')


def wait(mngr):
  """Waits for the save `mngr` is writing, if any; raises a UserError
  naming its step, path and reason if the write failed."""
  if mngr not in _IN_FLIGHT:
    return
  step, restore = _IN_FLIGHT.pop(mngr)
  try:
    mngr.wait_until_finished()
    mngr.check_for_errors()
  except Exception as e:  # pylint: disable=broad-except
    raise _write_error(mngr, step, e) from e
  restore()


def save(mngr, step, state, data_iterator, run, selection=None):
  """Starts saving step `step` (see the module doc: written in the
  background; `wait` for it); `selection` is the model-selection accuracy.

  Waits for the previous save first. Raises a UserError naming the step,
  the path and the reason when a write fails; the earlier checkpoints are
  untouched.
  """
  wait(mngr)
  run = dict(run, fingerprints={'model': fingerprints(_model(state)),
                                'opt': fingerprints(_opt(state))})
  restore = _quiet()
  try:
    mngr.save(step, args=ocp.args.Composite(
        model=ocp.args.StandardSave(_model(state)),
        opt=ocp.args.StandardSave(_opt(state)),
        data=grain.checkpoint.CheckpointSave(data_iterator),
        run=ocp.args.JsonSave(run)),
        metrics=(None if selection is None
                 else {SELECTION_METRIC: selection}))
  except Exception as e:  # pylint: disable=broad-except
    raise _write_error(mngr, step, e) from e
  _IN_FLIGHT[mngr] = (step, restore)


def _abstract(tree):
  """Shapes, dtypes and shardings to restore into. A leaf without a sharding
  is replicated over this run's devices: orbax would otherwise assume the
  topology that wrote the checkpoint, and a checkpoint from 4 devices or 2
  processes could not be read on 1 (tests/test_multihost.py)."""
  replicated = NamedSharding(Mesh(jax.devices(), ('data',)), P())

  def leaf(x):
    x = ocp.utils.to_shape_dtype_struct(x)
    if getattr(x, 'sharding', None) is None:
      x = jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated)
    return x

  return jax.tree.map(leaf, tree)


def saved_process_count(mngr, step):
  """How many processes wrote `step`: each saves its data iterator's
  position as data/process_<i>-of-<n>.json. None if that cannot be told."""
  folder = os.path.join(str(mngr.directory), str(step), 'data')
  counts = {int(m.group(1)) for name in (os.listdir(folder) if
                                         os.path.isdir(folder) else ())
            if (m := re.fullmatch(r'process_\d+-of-(\d+)\.json', name))}
  return counts.pop() if len(counts) == 1 else None


def _restore(mngr, step, **items):
  try:
    # A damaged file leaves orbax's reading coroutines to be collected
    # later, each printing its traceback: quiet, as for a failed save.
    with _quiet_failures():
      return mngr.restore(step, args=ocp.args.Composite(**items))
  except FileNotFoundError as e:
    raise DamagedError(mngr, step, f'missing file: {e}') from e
  except Exception as e:  # pylint: disable=broad-except
    message = str(e).strip().splitlines()
    # TensorStore appends a repr of a bound method, not details.
    reason = (message[0].split(' See full TensorStore details')[0]
              if message else repr(e))
    raise DamagedError(mngr, step, reason) from e


def restore_run(mngr, step):
  """The `run` item: config, history and fingerprints, as saved."""
  run = _restore(mngr, step, run=ocp.args.JsonRestore()).run
  if not isinstance(run, dict) or 'config' not in run:
    raise DamagedError(mngr, step, 'its run record has no config')
  return run


def _verify(mngr, step, name, restored, run):
  expected = run.get('fingerprints', {}).get(name)
  if expected is None:  # written before fingerprints existed
    return
  got = fingerprints(restored)
  changed = [path for path in expected if got.get(path) != expected[path]]
  if changed or set(got) != set(expected):
    raise DamagedError(mngr, step, f'{name}/{(changed or ["structure"])[0]} '
                       'differs from what was written')


def restore_train(mngr, step, state, data_iterator, run=None):
  """The full training state and data position at `step`, verified against
  its run record (`run`, read here unless the caller has it)."""
  run = run or restore_run(mngr, step)
  restored = _restore(
      mngr, step,
      model=ocp.args.StandardRestore(_abstract(_model(state))),
      opt=ocp.args.StandardRestore(_abstract(_opt(state))),
      data=grain.checkpoint.CheckpointRestore(data_iterator))
  _verify(mngr, step, 'model', restored.model, run)
  _verify(mngr, step, 'opt', restored.opt, run)
  return state.replace(**restored.model, **restored.opt), restored.data


def restore_model(mngr, step, variables):
  """Params and batch stats only (no optimizer), shaped like `variables`."""
  model = _restore(mngr, step, model=ocp.args.StandardRestore(
      _abstract(variables))).model
  _verify(mngr, step, 'model', model, restore_run(mngr, step))
  return model


def set_aside(mngr, step):
  """Moves a damaged step to `<workdir>/damaged_checkpoints/<step>`.

  Kept for inspection, out of the way of the steps training writes next.
  Returns where it went; the manager must be created again afterwards.
  """
  target = os.path.join(os.path.dirname(str(mngr.directory)),
                        'damaged_checkpoints', str(step))
  os.makedirs(os.path.dirname(target), exist_ok=True)
  shutil.rmtree(target, ignore_errors=True)
  os.rename(os.path.join(str(mngr.directory), str(step)), target)
  return target


@jax.jit
def _all_finite(tree):
  # One reduction over one concatenation: a reduction per array compiled
  # several times longer (one per array of ResNet-50), and this runs once
  # an epoch.
  return jnp.all(jnp.isfinite(jnp.concatenate([
      x.ravel().astype(jnp.float32) for x in jax.tree.leaves(tree)
      if jnp.issubdtype(x.dtype, jnp.inexact)])))


def specs(tree):
  """Each array's shape, dtype and sharding (`jax.ShapeDtypeStruct`): what
  compiling ahead of time needs, readable in a thread even after the
  arrays were donated to a step."""
  return jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
      tree)


def compile_checks(state):
  """Compiles `all_finite` and the fingerprints `save` computes for
  `state`'s arrays ahead of the first save, so that a thread can do it
  while training starts (their calls then find them compiled)."""
  trees = specs({'model': _model(state), 'opt': _opt(state)})
  _all_finite.lower(trees).compile()
  for tree in trees.values():
    _fingerprints.lower(tree).compile()


def all_finite(state):
  """Whether every parameter, statistic and optimizer value is finite."""
  return bool(_all_finite({'model': _model(state), 'opt': _opt(state)}))
