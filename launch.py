"""Trains or evaluates a config: python launch.py --config=configs/demo.py.

Flags: --config (with --config.key=value overrides), --workdir (default
runs/<config file name>), --mode=train|eval, --checkpoint=selected|latest|
STEP for eval, --compilation_cache (JAX's persistent cache; the run's
summary says how many programs came from it). For several processes, pass
--coordinator_address, --num_processes and --process_id to each, or start
them with srun or mpirun (JAX reads the rest from their environment; README
"Several processes or machines"); --heartbeat_timeout bounds how long the
others wait for one that died. A user's mistake (a config value, missing
data, a busy or foreign workdir) prints one line and exits 1;
--verbosity=1 shows its traceback.
"""
import functools
import os

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from fer_jax import errors
from fer_jax import hugepages

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Config file.',
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None,
                               'Run directory; default runs/<config name>.')
_MODE = flags.DEFINE_enum('mode', 'train', ['train', 'eval'],
                          'train (resuming if possible) or eval a checkpoint.')
_ROBUSTNESS = flags.DEFINE_bool(
    'robustness', False,
    '--mode=eval: also evaluate each split under named shifts (zoom, '
    'rotation, brightness, blur, JPEG, low resolution; fer_jax/robustness.py)'
    ' into eval/<split>_robustness.json.')
_CHECKPOINT = flags.DEFINE_string(
    'checkpoint', 'selected',
    "--mode=eval: 'selected' (by the selection split), 'latest' or a step.")
_COORDINATOR = flags.DEFINE_string('coordinator_address', None,
                                   'host:port of process 0, multi-host only.')
_NUM_PROCESSES = flags.DEFINE_integer('num_processes', 1, 'Multi-host only.')
_PROCESS_ID = flags.DEFINE_integer('process_id', 0, 'Multi-host only.')
_HEARTBEAT = flags.DEFINE_integer(
    'heartbeat_timeout', 30,
    'Multi-host only: seconds after which the processes of a run give up on '
    'one that stopped answering (JAX\'s default is 100).')
_CACHE = flags.DEFINE_string(
    'compilation_cache', None,
    "Folder of JAX's persistent compilation cache, which lets a run that "
    'compiles what an earlier one did read it back; default '
    '$JAX_COMPILATION_CACHE_DIR, else ~/.cache/fer_jax/jax. Empty: off.')
flags.mark_flags_as_required(['config'])


def cluster_size():
  """The process count a scheduler set for this job step, where JAX can
  detect the rest (coordinator, process id): srun's tasks, mpirun's ranks;
  else 1."""
  if 'SLURM_STEP_NODELIST' in os.environ:  # under srun, not just sbatch
    count = os.environ.get('SLURM_NTASKS', '')
  else:
    count = os.environ.get('OMPI_COMM_WORLD_SIZE', '')
  return int(count) if count.isdigit() else 1


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  verbose = flags.FLAGS.verbosity >= 1
  # Orbax logs every file it writes at INFO.
  logging.set_verbosity(logging.WARNING)
  # Imported here, not at the top: grain's worker processes are spawned and
  # re-import this file, which must not touch devices.
  import jax  # pylint: disable=g-import-not-at-top
  from fer_jax import evaluation  # pylint: disable=g-import-not-at-top
  from fer_jax import train  # pylint: disable=g-import-not-at-top
  cache = _CACHE.value
  if cache is None:
    cache = jax.config.jax_compilation_cache_dir or os.path.join(
        os.path.expanduser('~'), '.cache', 'fer_jax', 'jax')
  jax.config.update('jax_compilation_cache_dir', cache or None)
  if _NUM_PROCESSES.value > 1:
    jax.distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value,
                               _PROCESS_ID.value,
                               heartbeat_timeout_seconds=_HEARTBEAT.value)
  elif cluster_size() > 1:  # SLURM, Open MPI: JAX reads the rest itself
    jax.distributed.initialize(heartbeat_timeout_seconds=_HEARTBEAT.value)
  config_path = flags.FLAGS['config'].config_filename
  workdir = _WORKDIR.value or os.path.join(
      'runs', os.path.splitext(os.path.basename(config_path))[0])
  checkpoint = _CHECKPOINT.value
  if checkpoint not in ('selected', 'latest') and not checkpoint.isdigit():
    raise app.UsageError(f'--checkpoint={checkpoint}: expected selected, '
                         'latest or a step number')
  if _ROBUSTNESS.value and _MODE.value != 'eval':
    raise app.UsageError('--robustness evaluates a checkpoint: add --mode=eval')
  if _MODE.value == 'train':
    errors.report(train.train_and_evaluate, _CONFIG.value, workdir,
                  config_path, verbose=verbose)
  else:
    errors.report(evaluation.evaluate, _CONFIG.value, workdir, checkpoint,
                  _ROBUSTNESS.value, verbose=verbose)


if __name__ == '__main__':
  hugepages.reexec()
  app.run(main, flags_parser=functools.partial(
      errors.parse_flags, program='launch.py'))
