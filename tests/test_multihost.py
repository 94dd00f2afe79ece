"""One run on 1 device, on 1 process x 4 devices and on 2 processes x 2
devices (jax.distributed over loopback, gloo): the same trajectory, the same
evaluations, checkpoints that move between them, and a killed process that
stops the others instead of hanging them.

Tolerances: the first steps agree to float precision and the run to 1%
relative. Cross-device sums round differently, and max pooling routes some
gradients differently once values are near ties, which training amplifies;
a small learning rate keeps that slow. A global batch that depended on the
process split, or per-device BatchNorm statistics, would differ from step 1.
"""
import json
import os
import signal
import socket
import subprocess
import time

import numpy as np
import pytest

from conftest import launch, launch_args, run_env, tiny_config
from fer_jax import errors
from fer_jax import evaluation
from fer_jax import experiment
from fer_jax import predict
from fer_jax import train

HEARTBEAT = 10  # seconds; launch.py --heartbeat_timeout
TWO_DEVICES = '--xla_force_host_platform_device_count=2'
FOUR_DEVICES = '--xla_force_host_platform_device_count=4'


def _free_port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def _config(data_dir):
  # 8 steps an epoch, 2 epochs: a checkpoint to resume from mid-run.
  return tiny_config(data_dir, epochs=2, batch_size=64,
                     **{'optimizer.lr': 1e-3})


def _start_two(config, workdir, slurm=False):
  """Two launch.py processes of 2 CPU devices each: with the explicit flags,
  or as srun would start them (JAX detects the SLURM variables)."""
  port = _free_port()
  processes = []
  for i in range(2):
    args = launch_args(config, workdir) + [f'--heartbeat_timeout={HEARTBEAT}']
    env = {}
    if slurm:
      env.update(SLURM_JOB_ID='4242', SLURM_STEP_NODELIST='localhost',
                 SLURM_NTASKS='2', SLURM_PROCID=str(i), SLURM_LOCALID=str(i),
                 JAX_COORDINATOR_PORT=str(port))
    else:
      args += [f'--coordinator_address=127.0.0.1:{port}',
               '--num_processes=2', f'--process_id={i}']
    processes.append(subprocess.Popen(
        args, env=run_env(TWO_DEVICES, **env), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True))
  return processes


def _finish(processes):
  for process in processes:
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr[-3000:]


def _lines(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [json.loads(line) for line in f]


def _losses(workdir):
  return {l['step']: l['train/loss'] for l in _lines(workdir)
          if 'train/loss' in l}


@pytest.fixture(scope='module')
def runs(data_dir, tmp_path_factory):
  """{'one': 1 device (in this process), 'four': 1 process x 4 devices,
  'two_by_two': 2 processes x 2 devices, 'killed': 2 x 2 with process 1
  killed in epoch 2, then both restarted}: workdirs, plus how process 0
  ended after the kill."""
  config = _config(data_dir)
  root = tmp_path_factory.mktemp('multihost')
  dirs = {name: str(root / name)
          for name in ('one', 'four', 'two_by_two', 'killed')}
  train.train_and_evaluate(config, dirs['one'])
  launch(config, dirs['four'], xla_flags=FOUR_DEVICES)
  _finish(_start_two(config, dirs['two_by_two']))

  processes = _start_two(config, dirs['killed'])
  first = os.path.join(dirs['killed'], 'checkpoints', '8')
  while not os.path.isdir(first):
    assert processes[1].poll() is None, processes[1].communicate()[1][-3000:]
    time.sleep(0.2)
  processes[1].send_signal(signal.SIGKILL)
  killed_at = time.monotonic()
  try:
    _, stderr = processes[0].communicate(timeout=HEARTBEAT + 80)
  except subprocess.TimeoutExpired:
    processes[0].kill()
    pytest.fail(f'process 0 still running {HEARTBEAT + 80} s after process '
                '1 was killed')
  fault = {'seconds': time.monotonic() - killed_at,
           'returncode': processes[0].returncode, 'stderr': stderr}
  processes[1].communicate()
  _finish(_start_two(config, dirs['killed'], slurm=True))
  return config, dirs, fault


def test_two_by_two_and_one_by_four_follow_the_one_device_trajectory(runs):
  _, dirs, _ = runs
  one = _losses(dirs['one'])
  assert sorted(one) == list(range(1, 17))
  for name in ('four', 'two_by_two'):
    other = _losses(dirs[name])
    assert sorted(other) == sorted(one), name
    np.testing.assert_allclose([other[s] for s in (1, 2)],
                               [one[s] for s in (1, 2)], rtol=1e-5)
    np.testing.assert_allclose([other[s] for s in one],
                               [one[s] for s in one], rtol=1e-2)
  # 2 x 2 against 1 x 4: the same devices' worth of work split differently.
  four, two = _losses(dirs['four']), _losses(dirs['two_by_two'])
  np.testing.assert_allclose([two[s] for s in (1, 2)],
                             [four[s] for s in (1, 2)], rtol=1e-5)


def test_each_process_saves_its_iterator_and_each_image_counts_once(runs):
  _, dirs, _ = runs
  data = os.listdir(os.path.join(dirs['two_by_two'], 'checkpoints', '16',
                                 'data'))
  assert {'process_0-of-2.json', 'process_1-of-2.json'} <= set(data)
  evals = [l for l in _lines(dirs['two_by_two'])
           if 'validation/confusion' in l]
  assert len(evals) == 2
  for split in ('validation', 'test'):
    assert sum(map(sum, evals[-1][f'{split}/confusion'])) == 128


def test_a_killed_process_stops_the_other_and_a_restart_resumes_exactly(
    runs):
  _, dirs, fault = runs
  assert fault['returncode'] != 0
  assert fault['seconds'] < HEARTBEAT + 80
  assert ('another task died' in fault['stderr']
          or 'stopped sending heartbeats' in fault['stderr']), (
              fault['stderr'][-3000:])
  # Restarted (through the SLURM variables) from the epoch-1 checkpoint:
  # the uninterrupted 2 x 2 run's losses, exactly.
  killed, whole = _losses(dirs['killed']), _losses(dirs['two_by_two'])
  assert sorted(killed) == list(range(1, 17))
  np.testing.assert_array_equal([killed[s] for s in whole],
                                [whole[s] for s in whole])


def test_checkpoints_move_between_device_and_process_counts(runs, tmp_path):
  config, dirs, _ = runs
  # 2 processes x 2 devices -> this process's one device: evaluation,
  # prediction and the starting weights of a new run.
  with open(os.path.join(dirs['two_by_two'], 'eval', 'test.json')) as f:
    saved = json.load(f)
  here = evaluation.evaluate(config, dirs['two_by_two'])
  assert here['test']['confusion'] == saved['confusion']
  predictor = predict.Predictor.load(dirs['two_by_two'])
  with open(os.path.join(dirs['two_by_two'], 'eval',
                         'test_predictions.jsonl')) as f:
    rows = [json.loads(line) for line in f]
  from fer_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  source = pipeline.get_builder(config.data.name,
                                config.data.data_dir).as_data_source('test')
  images = [np.asarray(source[r['index']]['image']) for r in rows[:8]]
  np.testing.assert_allclose(
      predictor.probabilities(images),
      [[r['probabilities'][n] for n in predictor.class_names]
       for r in rows[:8]], atol=1e-5)
  started = config.copy_and_resolve_references()
  started.epochs = 1
  with started.unlocked():
    started.model.init_from = dirs['two_by_two']
  ex = experiment.Experiment(started)
  state = train.start_from(ex.initial_state(), ex.model,
                           started.model.init_from, ex.replicated)
  np.testing.assert_array_equal(
      state.params['Conv_0']['kernel'],
      predictor.variables['params']['Conv_0']['kernel'])
  # One device -> 1 process x 4 devices: the same confusion matrices.
  mine = evaluation.evaluate(config, dirs['one'])
  launch(config, dirs['one'], xla_flags=FOUR_DEVICES, mode='eval')
  for split in ('validation', 'test'):
    with open(os.path.join(dirs['one'], 'eval', f'{split}.json')) as f:
      assert json.load(f)['confusion'] == mine[split]['confusion']


def test_resuming_with_another_process_count_is_refused_in_one_line(runs):
  config, dirs, _ = runs
  longer = config.copy_and_resolve_references()
  longer.epochs = 3
  with pytest.raises(errors.UserError, match=(
      r'trained by 2 process\(es\) and this run has 1: .* '
      r'--config.model.init_from=')):
    train.train_and_evaluate(longer, dirs['two_by_two'])
  # The checkpoints are kept as they were, none set aside as damaged.
  assert sorted(os.listdir(os.path.join(dirs['two_by_two'],
                                        'checkpoints'))) == ['16', '8']
  assert not os.path.exists(os.path.join(dirs['two_by_two'],
                                         'damaged_checkpoints'))
