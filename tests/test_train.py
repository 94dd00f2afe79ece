import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import optax
import pytest

from conftest import launch_args, run_env, tiny_config
from fer_jax import checkpoint
from fer_jax import errors
from fer_jax import eval_files
from fer_jax import evaluation
from fer_jax import experiment
from fer_jax import optim
from fer_jax import report
from fer_jax import robustness
from fer_jax import steps
from fer_jax import time_split
from fer_jax import train
from fer_jax import weights
from fer_jax.data import transforms


# Every training feature that draws random numbers or changes the loss, so
# that the kill-and-resume test covers them.
FEATURES = {'data.rotation': 15.0, 'data.scale': (0.8, 1.2),
            'data.translation': 0.1, 'data.brightness': 0.4,
            'data.contrast': 0.4, 'data.gamma': 0.5, 'data.erasing': 0.5,
            'loss.label_smoothing': 0.1, 'loss.logit_adjustment': 1.0,
            'selection_metric': 'balanced_accuracy'}


@pytest.fixture(scope='module')
def reference(data_dir, stylized_synth, tmp_path_factory):
  """An uninterrupted 3-epoch tiny run, its training images mixed with
  stylised copies and every augmentation and loss option on: (config,
  workdir, final state, history)."""
  config = tiny_config(data_dir, **{'data.extra_train': (stylized_synth,)},
                       **FEATURES)
  workdir = str(tmp_path_factory.mktemp('reference'))
  state, history = train.train_and_evaluate(config, workdir)
  return config, workdir, jax.device_get(state.params), history


def _train_losses(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    lines = [json.loads(line) for line in f]
  return {l['step']: l['train/loss'] for l in lines if 'train/loss' in l}


def _params(workdir, config):
  ex = experiment.Experiment(config)
  mngr = ex.checkpoints(workdir)
  state = checkpoint.restore_train(mngr, mngr.latest_step(),
                                   ex.initial_state(), iter(ex.data.train))[0]
  return jax.device_get(state.params)


def test_step_schedule_decays_after_start_as_the_ancestor_repository():
  config = tiny_config(None)
  config.optimizer.lr = 0.01
  config.schedule.update(name='step', decay_start=80, decay_every=5,
                         decay_rate=0.9)
  lr = optim.learning_rate_fn(config, steps_per_epoch=10)
  # mainpro_FER.py: lr * 0.9 ** ((epoch - 80) // 5) once epoch > 80.
  for epoch, expected in [(0, 0.01), (80, 0.01), (84, 0.01), (85, 0.009),
                          (90, 0.0081), (249, 0.01 * 0.9 ** 33)]:
    np.testing.assert_allclose(lr(epoch * 10 + 9), expected, rtol=1e-5)


def test_sgd_clips_elementwise_then_adds_coupled_weight_decay():
  config = tiny_config(None)
  config.optimizer.update(lr=1.0, momentum=0.0, weight_decay=0.5, clip=0.1)
  tx = optim.create_optimizer(config, optax.constant_schedule(1.0))
  params = np.array([1.0, -2.0, 4.0])
  grads = np.array([0.05, -3.0, 0.2])
  updates, _ = tx.update(grads, tx.init(params), params)
  np.testing.assert_allclose(updates, -(np.array([0.05, -0.1, 0.1])
                                        + 0.5 * params))


def test_training_learns_and_reports_every_epoch(reference):
  config, workdir, _, history = reference
  assert [h['epoch'] for h in history] == [1, 2, 3]
  losses = _train_losses(workdir)
  assert sorted(losses) == list(range(1, 49))
  assert np.mean([losses[s] for s in range(41, 49)]) < np.mean(
      [losses[s] for s in range(1, 9)])
  for split in ('validation', 'test'):
    confusion = np.array(history[-1]['eval'][split]['confusion'])
    assert confusion.sum() == 128  # every image counted exactly once


def test_evaluating_the_checkpoint_reproduces_the_saved_accuracy(reference):
  config, workdir, _, history = reference
  chosen = weights.selected(history, config.selection_split)

  def report(split):
    with open(os.path.join(workdir, 'eval', f'{split}.json')) as f:
      return json.load(f)

  at_the_end = {split: report(split) for split in ('validation', 'test')}
  results = evaluation.evaluate(config, workdir, checkpoint_step='selected')
  for split in ('validation', 'test'):
    assert results[split]['accuracy'] == chosen['eval'][split]['accuracy']
    assert results[split]['confusion'] == chosen['eval'][split]['confusion']
    # Training's last words and --mode=eval write the same file.
    assert report(split) == at_the_end[split]
    assert report(split)['step'] == chosen['step']
    assert report(split)['checkpoint'] == 'selected'
    assert report(split)['confusion'] == chosen['eval'][split]['confusion']
    assert report(split)['classes']['happy']['support'] == sum(
        chosen['eval'][split]['confusion'][3])


# launch.py with orbax's commit of each checkpoint (the rename of its
# temporary folder) 3 s late: a window to kill the run in while a save is
# written in the background.
SLOW_COMMIT = """
import runpy, sys, time
from orbax.checkpoint._src.path import atomicity
commit = atomicity.AtomicRenameTemporaryPath.finalize
async def late(self):
  time.sleep(3)
  return await commit(self)
atomicity.AtomicRenameTemporaryPath.finalize = late
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name='__main__')
"""


def test_a_run_killed_while_a_save_is_written_resumes_exactly(
    reference, tmp_path, capsys):
  config, _, params, _ = reference
  workdir = str(tmp_path)
  process = subprocess.Popen(
      [sys.executable, '-c', SLOW_COMMIT, *launch_args(config, workdir)[1:]],
      env=run_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  folder = os.path.join(workdir, 'checkpoints')

  def trained():
    try:
      return max(_train_losses(workdir), default=0)
    except ValueError:  # a line being written
      return 0
  deadline = time.time() + 240
  # Killed while step 32's files are written, training having gone on.
  while not (os.path.exists(os.path.join(folder, '16'))
             and glob.glob(os.path.join(folder, '32.orbax-checkpoint-tmp*'))
             and trained() > 33):
    assert time.time() < deadline and process.poll() is None
    time.sleep(0.02)
  process.send_signal(signal.SIGKILL)
  process.wait()
  assert experiment.Experiment(config).checkpoints(
      workdir).latest_step() == 16

  state, history = train.train_and_evaluate(config, workdir)
  assert ('Training on 528 images: 512 of fer_synth/small train and 16 '
          'stylised (synth_minority)') in capsys.readouterr().out
  assert [h['epoch'] for h in history] == [1, 2, 3]
  assert sorted(_train_losses(workdir)) == list(range(1, 49))
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(state.params),
               params)


def test_nan_loss_stops_with_the_step_and_keeps_the_last_checkpoint(
    reference, tmp_path, monkeypatch):
  config, workdir, _, _ = reference
  workdir = shutil.copytree(workdir, tmp_path / 'run')
  # The finished run extended by an epoch whose images are all NaN, so step
  # 49 is the first NaN loss.
  normal = transforms.train_transform

  def nan_images(data_config):
    transform = normal(data_config)
    return lambda example, rng: dict(transform(example, rng),
                                     image=np.full((44, 44, 1), np.nan))

  monkeypatch.setattr(transforms, 'train_transform', nan_images)
  longer = tiny_config(config.data.data_dir, epochs=4, **{
      'data.extra_train': config.data.extra_train}, **FEATURES)
  with pytest.raises(errors.DivergedError, match='at step 49.*step 48'):
    train.train_and_evaluate(longer, str(workdir))
  assert experiment.Experiment(config).checkpoints(str(workdir)).all_steps()[
      -1] == 48


def test_workdir_of_another_model_is_refused(reference):
  config, workdir, _, _ = reference
  other = tiny_config(config.data.data_dir, **{
      'model.name': 'vgg19', 'data.extra_train': config.data.extra_train})
  with pytest.raises(errors.UserError, match=(
      r"config\.model\.name='vgg19' \(the run has 'uvgg19'\).*--workdir")):
    train.train_and_evaluate(other, workdir)


@pytest.mark.parametrize('overrides, message', [
    ({'batch_size': 0}, 'config.batch_size=0: expected a positive integer'),
    ({'data.crop': -1}, 'config.data.crop=-1'),
    ({'data.crop': 50}, 'config.data.crop=50: larger than'),
    ({'data.name': 'affectnet'}, "config.data.name='affectnet'"),
    ({'selection_split': 'train'}, "config.selection_split='train'"),
    ({'data.class_weights': 'balanced'},
     "config.data.class_weights='balanced'"),
    ({'data.holdout': -64}, 'config.data.holdout=-64: expected an integer '
     '>= 0'),
    ({'schedule.name': 'step', 'schedule.decay_every': 0},
     'config.schedule.decay_every=0: expected a positive number of epochs'),
    ({'data.cutout_length': -8}, 'config.data.cutout_length=-8'),
    ({'data.crop_scale': (0.5, 1.5)}, 'config.data.crop_scale=(0.5, 1.5): '
     'expected (low, high) with 0 < low <= high <= 1'),
    ({'optimizer.lr': -0.1}, 'config.optimizer.lr=-0.1: expected a positive'),
    ({'data.mean': (0.5, 0.5, 0.5), 'data.std': (0.2, 0.2, 0.2)},
     "config.data.mean=(0.5, 0.5, 0.5): expected 1 finite value(s), one per "
     "channel of 'fer_synth/small'"),
    ({'data.mean': (0.5,), 'data.std': (0.0,)}, 'config.data.std=(0.0,): '
     'expected 1 finite value(s)'),
    ({'data.workers': -1}, 'config.data.workers=-1: expected an integer >= 0'),
    ({'dtype': 'float16'}, "config.dtype='float16': expected one of "
     "('float32', 'bfloat16')"),
    ({'data.augment': 'resized_crop'}, "config.data.eval_crop='ten': with "
     "config.data.augment='resized_crop'"),
])
def test_bad_config_value_names_the_key(data_dir, tmp_path, overrides,
                                        message):
  with pytest.raises(errors.UserError, match=re.escape(message)):
    train.train_and_evaluate(tiny_config(data_dir, **overrides),
                             str(tmp_path))
  assert not os.path.exists(tmp_path / 'checkpoints')


def test_fer2013_config_says_how_to_prepare_the_data(data_dir, tmp_path):
  from configs import uvgg_fer2013  # pylint: disable=g-import-not-at-top
  config = uvgg_fer2013.get_config()
  config.data.data_dir = data_dir
  with pytest.raises(FileNotFoundError, match=(
      'run python -m fer_jax.data.prepare --dataset=fer2013 '
      '--manual_dir=PATH')):
    train.train_and_evaluate(config, str(tmp_path))


def test_class_weights_weight_each_image_loss_by_its_class():
  from fer_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  import flax.linen as nn  # pylint: disable=g-import-not-at-top

  source = [{'label': label} for label in (0, 0, 0, 1)]
  counts = pipeline.class_counts(source, 2)
  np.testing.assert_array_equal(counts, [3, 1])
  class_weights = pipeline.class_weights(counts, 'inverse_frequency')
  np.testing.assert_allclose(class_weights, [4 / 6, 2])  # N / (K n_c)
  with pytest.raises(ValueError, match=r'classes \[2\] have no training'):
    pipeline.class_counts(source, 3)

  class Linear(nn.Module):
    @nn.compact
    def __call__(self, x, train):
      del train
      return nn.Dense(2)(x.reshape(x.shape[0], -1))

  model, tx = Linear(), optax.sgd(0.1)
  batch = {'image': np.random.default_rng(0).normal(size=(4, 3, 3, 1)),
           'label': np.array([0, 0, 0, 1])}
  variables = model.init(jax.random.key(0), batch['image'], train=False)
  state = steps.TrainState(step=0, params=variables['params'],
                           batch_stats={}, opt_state=tx.init(
                               variables['params']))
  logits = model.apply(variables, batch['image'], train=False)
  losses = optax.softmax_cross_entropy_with_integer_labels(logits,
                                                           batch['label'])
  _, metrics = steps.train_step(state, batch, jax.random.key(1), model=model,
                                tx=tx, lr_fn=lambda step: 0.1,
                                class_weights=class_weights)
  np.testing.assert_allclose(metrics['loss'],
                             np.mean(losses * class_weights[batch['label']]),
                             rtol=1e-6)


def test_launch_rejects_an_unknown_config_key(tmp_path):
  args = launch_args(tiny_config(None), str(tmp_path)) + [
      '--config.optimizer.learning_rate=0.1']
  result = subprocess.run(args, env=run_env(), capture_output=True,
                          text=True, timeout=120)
  assert result.returncode != 0
  assert result.stderr.strip().splitlines()[-1] == (
      "launch.py: the config has no key \"'learning_rate'\"; check the "
      '--config.* overrides')


def test_robustness_evaluation_scores_every_shift_and_the_report_shows_it(
    reference):
  config, workdir, _, _ = reference
  results = evaluation.evaluate(config, workdir, robustness=True)
  for split in config.data.eval_splits:
    record = eval_files.read_report(workdir, split, '_robustness')
    assert list(record['shifts']) == ['none', *robustness.SHIFTS]
    none = record['shifts']['none']
    assert none['accuracy'] == results[split]['accuracy']
    assert none['balanced_accuracy'] == results[split]['balanced_accuracy']
    # The reference trains with rotation 15, scale 0.8-1.2 and brightness
    # 0.4 (FEATURES); blur, JPEG and low resolution stay unseen.
    assert {name: r['augmented_in_training']
            for name, r in record['shifts'].items()} == {
                'none': None, 'zoom_in_15': True, 'zoom_out_15': True,
                'rotate_15': True, 'brighter_40': True, 'darker_40': True,
                'blur_sigma1': False, 'jpeg_q30': False, 'low_res_24': False}
    text = '\n'.join(report.robustness_section(split, record))
    jpeg = record['shifts']['jpeg_q30']
    assert (f"| jpeg_q30 | JPEG quality 30 | no (unseen) | "
            f"{100 * jpeg['accuracy']:.2f} |") in text


def _time_records(workdir, span):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [r for r in map(json.loads, f) if f'{span}/steps_s' in r]


def test_the_time_split_adds_up_and_shows_a_slow_input(data_dir, tmp_path,
                                                       monkeypatch):
  config = tiny_config(data_dir, epochs=2, log_every=4)  # 16 steps an epoch
  started = time.monotonic()
  train.train_and_evaluate(config, str(tmp_path / 'run'))
  wall = time.monotonic() - started
  intervals = _time_records(str(tmp_path / 'run'), 'time')
  assert [r['step'] for r in intervals] == list(range(4, 33, 4))
  epochs = _time_records(str(tmp_path / 'run'), 'epoch_time')
  assert [r['step'] for r in epochs] == [16, 32]
  kinds = [f'{k}_s' for k in time_split.KINDS]
  for r in intervals + epochs:
    assert all(r[f'time/{k}' if 'time/steps_s' in r else f'epoch_time/{k}']
               >= 0 for k in kinds)
  # The epochs' records cover the session but what follows the last
  # checkpoint (closing the writers); the startup, compiling, evaluation
  # and checkpoint kinds are all there.
  covered = sum(r[f'epoch_time/{k}'] for r in epochs for k in kinds)
  assert wall - 1.0 <= covered <= wall, (covered, wall)
  first = epochs[0]
  for kind in ('startup', 'compile', 'eval', 'checkpoint', 'steps'):
    assert first[f'epoch_time/{kind}_s'] > 0, kind
  assert epochs[1]['epoch_time/compile_s'] < 0.5  # compiled once
  assert sum(r['time/images_per_s'] for r in intervals) > 0
  # The session record holds the same split, for report.md.
  run = report.read_run(str(tmp_path / 'run'))[0]
  session, = run['sessions']
  assert abs(sum(session['time'][k] for k in time_split.KINDS)
             - session['seconds']) <= 0.1
  assert session['time']['images'] == 2 * 16 * 32
  row, = [l for l in report.hardware_section(run) if l.startswith('| 1 | ')
          and 'process' not in l]
  cells = row.strip('| ').split(' | ')
  assert [float(v) for v in cells[1:1 + len(time_split.KINDS)]] == [
      round(session['time'][k], 1) for k in time_split.KINDS]

  # A pipeline 10 ms slower an image: about 5 s more of input an epoch.
  slow = transforms.train_transform

  def slowed(data_config):
    transform = slow(data_config)

    def with_a_wait(example, rng):
      time.sleep(0.01)
      return transform(example, rng)
    return with_a_wait
  monkeypatch.setattr(transforms, 'train_transform', slowed)
  config.epochs = 1  # 16 steps: 512 images
  train.train_and_evaluate(config, str(tmp_path / 'slow'))
  waited, = [r['epoch_time/input_s']
             for r in _time_records(str(tmp_path / 'slow'), 'epoch_time')]
  # Less what the two prefetched batches and the compile overlap.
  assert waited > epochs[0]['epoch_time/input_s'] + 3, waited
