"""Shared fixtures: a tiny config on fer_synth/small, built once per session."""
import contextlib
import os
import signal
import subprocess
import sys


def _pin_worker():
  """Gives each pytest-xdist worker its own share of the cores, inherited
  by the launch.py processes it starts.

  XLA:CPU sizes its thread pools to the cores a process may run on, and
  idle pool threads spin before they sleep: two workers (and their
  multi-process runs) each spread over both cores of a 2-core machine took
  18 min 3 s and 31 CPU minutes for the warm suite, pinned 12 min 26 s and
  18.6 CPU minutes.
  """
  worker = os.environ.get('PYTEST_XDIST_WORKER')  # gw0, gw1, ...
  if not worker or not hasattr(os, 'sched_setaffinity'):
    return
  cores = sorted(os.sched_getaffinity(0))
  count = int(os.environ['PYTEST_XDIST_WORKER_COUNT'])
  if count > len(cores):
    return
  share, index = len(cores) // count, int(worker[2:])
  last = index == count - 1
  os.sched_setaffinity(0, cores[index * share:None if last else
                                (index + 1) * share])


_pin_worker()  # before jax starts its thread pools


def _compile_for_speed_of_compiling():
  """Tests run a few steps of each program, so they compile for speed of
  compiling: the same computation (the same losses to the last digit here),
  in less optimised machine code. The demo model's train step at 1/16
  width, batch 32, on one core: compiled in 17.8 s, 32 ms a step (XLA's
  defaults); 9.7 s, 105 ms (backend optimisation level 0); 5.3 s, 98 ms
  (level 0, fusions through the older elemental emitters rather than the
  fusion emitters; at level 2 that choice saves nothing). Launched
  processes inherit it (`run_env`)."""
  flags = os.environ.get('XLA_FLAGS', '')
  for flag, value in (('--xla_backend_optimization_level', '0'),
                      ('--xla_cpu_use_fusion_emitters', 'false')):
    if flag not in flags:
      flags += f' {flag}={value}'
  os.environ['XLA_FLAGS'] = flags.strip()


_compile_for_speed_of_compiling()  # before jax reads XLA_FLAGS

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import jax.numpy as jnp  # pylint: disable=wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position
import pytest  # pylint: disable=g-import-not-at-top,wrong-import-position

from configs import demo  # pylint: disable=wrong-import-position
from fer_jax.models import cpu_conv  # pylint: disable=wrong-import-position

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Compiled programs are reused across tests and the subprocesses they start.
CACHE_DIR = os.path.join(REPO, '.pytest_cache', 'jax')
jax.config.update('jax_compilation_cache_dir', CACHE_DIR)
jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.5)


@pytest.fixture(scope='session')
def data_dir(tmp_path_factory):
  """A TFDS folder with fer_synth/small built: a test that runs launch.py
  under limits (a file-size limit, say) must not build it there."""
  from fer_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  path = str(tmp_path_factory.mktemp('tfds'))
  pipeline.get_builder('fer_synth/small', path)
  return path


@pytest.fixture(scope='session')
def rafdb_dir(tmp_path_factory):
  """The generated RAF-DB (official layout), prepared."""
  import fixtures  # pylint: disable=g-import-not-at-top
  from fer_jax.data import prepare  # pylint: disable=g-import-not-at-top
  root = tmp_path_factory.mktemp('rafdb')
  prepare.prepare('rafdb', fixtures.write_rafdb_official(str(root / 'raw')),
                  str(root / 'tfds'))
  return str(root / 'tfds')


@pytest.fixture(scope='session')
def stylized_synth(data_dir):
  """16 stylised copies of fer_synth/small training faces (disgust, fear)."""
  from fer_jax.data import stylize  # pylint: disable=g-import-not-at-top
  stylize.create('fer_synth/small', 'synth_minority', add='disgust:6,fear:10',
                 styles='2', data_dir=data_dir)
  return 'synth_minority'


def init_variables(model, shape, seed=0):
  """`model`'s variables for images of `shape`, compiled as training
  compiles its initialisation: run eagerly, the initialisers compile op by
  op (VGG19 at 1/16 width: 32 s against 3 s)."""
  return jax.jit(model.init, static_argnames='train',
                 compiler_options=cpu_conv.init_compiler_options())(
                     jax.random.key(seed), jnp.zeros((1, *shape)),
                     train=False)


def tiny_config(data_dir, **overrides):
  """U-VGG19 at 1/16 width on 512 training images: 16 steps an epoch."""
  config = demo.get_config()
  config.data.name = 'fer_synth/small'
  config.data.data_dir = data_dir
  config.data.threads = 1
  config.model.width = 1 / 16
  config.batch_size = 32
  config.eval_batch_size = 64
  config.epochs = 3
  config.log_every = 1
  config.schedule.name = 'constant'
  for key, value in overrides.items():
    *path, last = key.split('.')
    node = config
    for name in path:
      node = node[name]
    node[last] = value
  return config


def launch_args(config, workdir):
  """`launch.py` arguments that rebuild `config` from configs/demo.py."""
  args = [sys.executable, os.path.join(REPO, 'launch.py'),
          '--config=' + os.path.join(REPO, 'configs', 'demo.py'),
          '--workdir=' + workdir]
  reference = demo.get_config()
  for key in ('data.name', 'data.data_dir', 'data.threads',
              'data.extra_train', 'model.width',
              'batch_size', 'eval_batch_size', 'epochs', 'log_every',
              'schedule.name', 'optimizer.lr', 'selection_metric',
              'data.rotation', 'data.scale', 'data.translation',
              'data.brightness', 'data.contrast', 'data.gamma',
              'data.erasing', 'loss.label_smoothing',
              'loss.logit_adjustment'):
    node, ref = config, reference
    for name in key.split('.'):
      node, ref = node[name], ref[name]
    if node != ref:
      args.append(f'--config.{key}={node}')
  return args


@contextlib.contextmanager
def within(seconds):
  """Fails the test with a TimeoutError where it would hang (opening a FIFO
  blocks, say); SIGALRM interrupts even a blocked system call."""
  def fail(*_):
    raise TimeoutError(f'still running after {seconds} s: it hangs')
  previous = signal.signal(signal.SIGALRM, fail)
  signal.alarm(seconds)
  try:
    yield
  finally:
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def run_env(xla_flags='', **extra):
  """This process's environment for a launched one: the same compilation
  cache and XLA_FLAGS, `xla_flags` added to them, and `extra`."""
  return dict(os.environ, JAX_COMPILATION_CACHE_DIR=CACHE_DIR,
              PYTHONPATH=REPO,
              XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} {xla_flags}",
              **extra)


def launch(config, workdir, mode='train', xla_flags=''):
  """Runs launch.py (--mode) to completion in a new process, `xla_flags`
  added to its XLA_FLAGS; returns its stdout."""
  result = subprocess.run(launch_args(config, workdir) + [f'--mode={mode}'],
                          env=run_env(xla_flags),
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  return result.stdout


@pytest.fixture(scope='session')
def smoke_ablation(data_dir, tmp_path_factory):
  """Rows 1 (VGG19, no switches) and 6 (U-VGG19, all) of the U-VGG19 table,
  one tiny epoch each: (base config, workdir, the table's text)."""
  from fer_jax import ablate  # pylint: disable=g-import-not-at-top
  config = tiny_config(data_dir, epochs=1)
  workdir = str(tmp_path_factory.mktemp('ablation'))
  text = ablate.run(config, 'uvgg19', workdir, rows=('1', '6'),
                    base_path=os.path.join(REPO, 'configs', 'demo.py'))
  return config, workdir, text


def pytest_collection_modifyitems(items):
  """The longest module first, so that the others run beside it instead of
  after it (with pytest-xdist's --dist=loadscope, pytest.ini)."""
  items.sort(key=lambda item: item.module.__name__ != 'test_multihost')


def assert_onnx_matches(onnx_path, predictor, faces, atol=1e-4):
  """onnxruntime on the ONNX file at `onnx_path` gives `predictor`'s
  probabilities for the uint8 face crops `faces` (any size), to `atol`."""
  import onnxruntime  # pylint: disable=g-import-not-at-top
  from fer_jax import export  # pylint: disable=g-import-not-at-top
  session = onnxruntime.InferenceSession(
      onnx_path, providers=['CPUExecutionProvider'])
  images = export.onnx_images(faces, predictor.config, predictor.image_shape)
  got, = session.run(None, {'image': images})
  expected = predictor.probabilities(faces)
  np.testing.assert_allclose(got, expected, atol=atol)
  return got


def one_epoch_fer2013_run(root, config):
  """`config` (a FER2013 config) at 1/16 width, one epoch on a
  FER2013-layout fixture written under `root`: (config, workdir, raw)."""
  import fixtures  # pylint: disable=g-import-not-at-top
  from fer_jax import train  # pylint: disable=g-import-not-at-top
  from fer_jax.data import prepare  # pylint: disable=g-import-not-at-top
  raw = fixtures.write_fer2013_folders(str(root / 'raw'))
  prepare.prepare('fer2013', raw, str(root / 'tfds'))
  config.data.update(data_dir=str(root / 'tfds'), threads=1)
  config.model.width = 1 / 16
  config.update(epochs=1, batch_size=8, eval_batch_size=8, log_every=1)
  workdir = str(root / 'run')
  train.train_and_evaluate(config, workdir)
  return config, workdir, raw
