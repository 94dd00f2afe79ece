"""A workdir is one run: identity, lock, verified checkpoints, safe logs."""
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import types

from absl import logging as absl_logging
import jax
import numpy as np
import pytest

from conftest import REPO, launch_args, run_env, tiny_config
from fer_jax import checkpoint
from fer_jax import errors
from fer_jax import evaluation
from fer_jax import experiment
from fer_jax import train
from fer_jax import weights
from fer_jax import workdir as workdir_lib


@pytest.fixture(scope='module')
def finished(data_dir, tmp_path_factory):
  """A finished 2-epoch tiny run: (config, workdir, final params)."""
  config = tiny_config(data_dir, epochs=2)
  workdir = str(tmp_path_factory.mktemp('finished'))
  state, _ = train.train_and_evaluate(config, workdir)
  return config, workdir, jax.device_get(state.params)


def _copy(workdir, tmp_path):
  return str(shutil.copytree(workdir, tmp_path / 'run'))


@pytest.mark.parametrize('key, value', [
    ('seed', 1), ('data.holdout', 64), ('data.cutout_holes', 0),
    ('optimizer.lr', 0.02), ('schedule.name', 'cosine'), ('data.flip', False),
])
def test_a_changed_field_is_another_run_for_training_and_eval(
    finished, key, value):
  config, workdir, _ = finished
  other = tiny_config(config.data.data_dir, epochs=2, **{key: value})
  pattern = rf'holds another run: config\.{key}=.*\(the run has .*--workdir'
  with pytest.raises(errors.UserError, match=pattern):
    train.train_and_evaluate(other, workdir)
  with pytest.raises(errors.UserError, match=pattern):
    evaluation.evaluate(other, workdir)


def test_differences_list_every_key_with_both_values():
  saved = tiny_config(None).to_dict()
  config = tiny_config(None, seed=3, **{'data.fold': 2, 'data.threads': 8})
  assert workdir_lib.differences(saved, config.to_dict(),
                                 workdir_lib.MAY_DIFFER) == {
                                     'seed': (0, 3),
                                     'data.fold': ('<absent>', 2)}


def test_where_data_is_read_and_eval_only_fields_may_differ(finished):
  config, workdir, params = finished
  # Where the data is read from and how fast: the same run.
  same = tiny_config(config.data.data_dir, epochs=2, log_every=5,
                     **{'data.threads': 2})
  state, history = train.train_and_evaluate(same, workdir)
  assert [h['epoch'] for h in history] == [1, 2]
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(state.params),
               params)
  # Evaluation-only fields, for evaluation only.
  centre = tiny_config(config.data.data_dir, epochs=2,
                       **{'data.eval_crop': 'centre',
                          'data.eval_splits': ('test', 'validation')})
  assert set(evaluation.evaluate(centre, workdir)) == {'test', 'validation'}
  # Without the selection split: the run's own selection still holds.
  test_only = tiny_config(config.data.data_dir, epochs=2,
                          **{'data.eval_splits': ('test',)})
  assert set(evaluation.evaluate(test_only, workdir)) == {'test'}
  with pytest.raises(errors.UserError, match='config.data.eval_crop'):
    train.train_and_evaluate(centre, workdir)


def test_more_epochs_extend_the_run_and_cosine_says_it_is_recomputed(
    finished, tmp_path, capsys):
  config, workdir, _ = finished
  workdir = _copy(workdir, tmp_path)
  longer = tiny_config(config.data.data_dir, epochs=3)
  _, history = train.train_and_evaluate(longer, workdir)
  assert [h['epoch'] for h in history] == [1, 2, 3]
  assert 'from 2 to 3 epochs' in capsys.readouterr().out
  saved = tiny_config(None, epochs=3, **{'schedule.name': 'cosine'}).to_dict()
  line = workdir_lib.check_same_run(
      saved, tiny_config(None, epochs=5,
                         **{'schedule.name': 'cosine'}).to_dict(), 'w',
      'train')
  assert 'cosine schedule of the remaining steps is recomputed over 5' in line
  with pytest.raises(errors.UserError, match=r'config\.epochs=1 \(the run '
                     r'has 3\)'):
    train.train_and_evaluate(tiny_config(config.data.data_dir, epochs=1),
                             workdir)


def test_a_second_training_run_in_a_busy_workdir_is_refused(finished,
                                                             tmp_path):
  config, workdir, _ = finished
  workdir = _copy(workdir, tmp_path)
  with workdir_lib.lock(workdir):
    with pytest.raises(errors.UserError,
                       match=r'in use by another training run \(pid \d+'):
      train.train_and_evaluate(config, workdir)
    # Reading needs no lock.
    evaluation.evaluate(config, workdir)
  train.train_and_evaluate(config, workdir)  # released


def test_a_killed_run_does_not_leave_the_lock_stuck(tmp_path):
  holder = subprocess.Popen(
      [sys.executable, '-c',
       'import sys, time; from fer_jax import workdir\n'
       f'with workdir.lock({str(tmp_path)!r}):\n'
       '  print("locked", flush=True); time.sleep(600)'],
      env=run_env(), stdout=subprocess.PIPE, text=True)
  assert holder.stdout.readline().strip() == 'locked'
  with pytest.raises(errors.UserError, match='in use'):
    with workdir_lib.lock(str(tmp_path)):
      pass
  holder.send_signal(signal.SIGKILL)
  holder.wait()
  with workdir_lib.lock(str(tmp_path)):
    pass


def test_diverged_state_is_never_saved_as_a_good_checkpoint(data_dir,
                                                            tmp_path):
  config = tiny_config(data_dir, epochs=1, **{'optimizer.lr': 1e6})
  with pytest.raises(errors.DivergedError,
                     match='No checkpoint was saved before it'):
    train.train_and_evaluate(config, str(tmp_path))
  assert not glob.glob(str(tmp_path / 'checkpoints' / '[0-9]*'))


def test_all_finite_sees_an_infinite_batch_norm_variance(finished):
  config, workdir, _ = finished
  ex = experiment.Experiment(config)
  state = ex.initial_state()
  assert checkpoint.all_finite(state)
  stats = jax.tree.map(lambda x: x.at[0].set(np.inf), state.batch_stats)
  assert not checkpoint.all_finite(state.replace(batch_stats=stats))


def _damage(workdir, step):
  """Flips bytes in the middle of the largest file of the step's params."""
  files = [f for f in glob.glob(os.path.join(workdir, 'checkpoints',
                                             str(step), 'model', '**'),
                                recursive=True) if os.path.isfile(f)]
  target = max(files, key=os.path.getsize)
  with open(target, 'r+b') as f:
    f.seek(os.path.getsize(target) // 2)
    data = f.read(16)
    f.seek(os.path.getsize(target) // 2)
    f.write(bytes(b ^ 0xFF for b in data))


def test_a_damaged_checkpoint_is_named_and_the_one_before_taken(
    finished, tmp_path):
  config, workdir, params = finished
  workdir = _copy(workdir, tmp_path)
  _damage(workdir, 32)
  with pytest.raises(errors.UserError,
                     match=r'checkpoint step 32 in .* is damaged .*'
                     r'--checkpoint=STEP, one of \[16\]'):
    evaluation.evaluate(config, workdir, 'latest')
  # Training moves it aside and retrains from step 16 to the same weights.
  state, history = train.train_and_evaluate(config, workdir)
  assert os.path.isdir(os.path.join(workdir, 'damaged_checkpoints', '32'))
  assert [h['epoch'] for h in history] == [1, 2]
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(state.params),
               params)


def test_a_run_whose_checkpoints_are_all_damaged_is_refused_as_it_is(
    finished, tmp_path):
  config, workdir, _ = finished
  workdir = _copy(workdir, tmp_path)
  for step in (16, 32):
    _damage(workdir, step)
  def contents():  # the lock file records each attempt: left out
    return {path: open(path, 'rb').read() for path in glob.glob(
        os.path.join(workdir, '**'), recursive=True)
            if os.path.isfile(path) and os.path.basename(path) != 'lock'}
  before = contents()
  with pytest.raises(errors.UserError, match=(
      r'checkpoints are all damaged \(steps 16, 32 in .*\); nothing was '
      r'moved or deleted')):
    train.train_and_evaluate(config, workdir)
  assert contents() == before  # metrics.jsonl and the checkpoints as they were


def test_a_metrics_line_cut_by_a_kill_is_dropped_on_resume(finished,
                                                           tmp_path):
  config, workdir, _ = finished
  workdir = _copy(workdir, tmp_path)
  path = os.path.join(workdir, 'metrics.jsonl')
  with open(path, 'a') as f:
    f.write('{"step": 33, "train/lo')
  train.train_and_evaluate(tiny_config(config.data.data_dir, epochs=3),
                           workdir)
  with open(path) as f:
    steps = [json.loads(line)['step'] for line in f if 'train/loss' in line]
  assert steps == list(range(1, 49))


def test_failed_save_stops_the_run_with_the_path_and_reason(data_dir,
                                                            tmp_path):
  # The parameters (324 KB) need a file past the 128 KB limit set here,
  # which fails writes with EFBIG as a full disk fails them with ENOSPC.
  config = tiny_config(data_dir, epochs=1)
  result = subprocess.run(
      ['bash', '-c', 'trap "" XFSZ; ulimit -f 128; exec "$@"', 'bash',
       *launch_args(config, str(tmp_path))], env=run_env(), text=True,
      capture_output=True, timeout=300, check=False)
  assert result.returncode == 1
  lines = result.stderr.replace('\r', '\n').strip().splitlines()
  assert lines[-1].startswith('error: could not write checkpoint step 16 to '
                              f"{tmp_path}/checkpoints: "), result.stderr[-6000:]
  assert 'File too large' in lines[-1]
  assert 'Traceback' not in result.stderr
  # Only orbax's temporary folder, which never reads as a checkpoint.
  assert checkpoint.manager(str(tmp_path), 2, True).all_steps() == []


def test_a_failed_save_leaves_logging_as_it_was(finished, tmp_path, caplog):
  config, _, _ = finished
  ex = experiment.Experiment(config)
  state = ex.initial_state()
  mngr = ex.checkpoints(str(tmp_path))
  # A file where the checkpoints were: every write fails.
  shutil.rmtree(str(mngr.directory))
  with open(str(mngr.directory), 'w') as f:
    f.write('in the way')
  absl_logging.set_verbosity(absl_logging.INFO)
  unraisable, previous = [], sys.unraisablehook
  sys.unraisablehook = unraisable.append
  try:
    # In a thread, so that a save stuck waiting for a folder that was never
    # made fails here instead of after orbax's 300 s barrier timeout.
    raised = []

    def save():
      try:
        checkpoint.save(mngr, 16, state, iter(ex.data.train), {'history': []})
      except errors.UserError as e:
        raised.append(e)
    saving = threading.Thread(target=save, daemon=True)
    saving.start()
    saving.join(timeout=60)
    assert not saving.is_alive(), 'the failed save hangs'
    assert len(raised) == 1
    assert (f'could not write checkpoint step 16 to {mngr.directory}'
            in str(raised[0]))
    assert absl_logging.get_verbosity() == absl_logging.INFO
    with caplog.at_level('INFO'):
      absl_logging.info('the notebook logs on')
    assert 'the notebook logs on' in caplog.text
    # An unraisable exception of the user's own still reaches their hook.
    sys.unraisablehook(types.SimpleNamespace(
        exc_type=ValueError, exc_value=ValueError('theirs'),
        exc_traceback=None, err_msg=None, object=None))
    assert [str(u.exc_value) for u in unraisable] == ['theirs']
  finally:
    sys.unraisablehook = previous


def _evaluate_in_launch(config, workdir, *args, shell=''):
  """launch.py --mode=eval ARGS on `workdir` after the bash commands
  `shell`: (exit status, stderr lines)."""
  result = subprocess.run(
      ['bash', '-c', shell + ' exec "$@"', 'bash',
       *launch_args(config, workdir), '--mode=eval', *args], env=run_env(),
      text=True, capture_output=True, timeout=300, check=False)
  return (result.returncode,
          result.stderr.replace('\r', '\n').strip().splitlines())


def test_a_full_disk_during_evaluation_is_one_line_and_leaves_no_file(
    finished, tmp_path):
  config, workdir, _ = finished
  workdir = _copy(workdir, tmp_path)
  # 2 KB: the predictions file is larger (EFBIG, as a full disk's ENOSPC).
  status, lines = _evaluate_in_launch(config, workdir,
                                      shell='trap "" XFSZ; ulimit -f 2;')
  assert status == 1
  assert len(lines) == 1, lines
  assert lines[0].startswith(f'error: could not write {workdir}/eval/')
  assert 'File too large' in lines[0]
  assert not glob.glob(os.path.join(workdir, 'eval', '*.tmp'))


@pytest.mark.parametrize('damage, mode', [
    ('every file', 'eval'), ('array data cut short', 'eval'),
    ('array data cut short', 'train')])
def test_a_damaged_checkpoint_is_one_line_without_library_noise(
    finished, tmp_path, damage, mode):
  config, workdir, _ = finished
  workdir = _copy(workdir, tmp_path)
  # Training takes the checkpoint before a damaged one: damage both.
  for step in (32,) if mode == 'eval' else (16, 32):
    model = os.path.join(workdir, 'checkpoints', str(step), 'model')
    pattern = ('**/*' if damage == 'every file' else 'ocdbt.process_*/d/*')
    for name in glob.glob(os.path.join(model, pattern), recursive=True):
      if os.path.isfile(name):
        with open(name, 'r+b') as f:
          head = f.read(100)
          f.seek(0)
          f.truncate()
          f.write(b'not what orbax wrote' if damage == 'every file'
                  else head)
  status, lines = _evaluate_in_launch(config, workdir, '--checkpoint=latest',
                                      f'--mode={mode}')
  assert status == 1
  assert len(lines) <= 5, '\n'.join(lines[:20])
  assert lines[-1].startswith(
      'error: checkpoint step 32 in ' if mode == 'eval'
      else f'error: {workdir} holds a run whose checkpoints are all damaged')
  assert 'TensorStore' not in lines[-1]


def test_starting_from_weights_of_another_input_is_refused(finished,
                                                          tmp_path):
  # Only a classifier of another class count may keep a fresh
  # initialisation; a 3-channel first convolution for grey input may not.
  config, workdir, _ = finished
  w = weights.load(workdir)
  first = 'Conv_0'
  kernel = w.variables['params'][first]['kernel']
  w.variables['params'][first]['kernel'] = np.repeat(kernel, 3, axis=2)
  path = tmp_path / 'rgb.msgpack'
  path.write_bytes(weights.export_record(w))
  ex = experiment.Experiment(config)
  with pytest.raises(errors.UserError, match=(
      rf"its params/{first}/kernel is \(3, 3, 3, \d+\), this model needs "
      r'\(3, 3, 1, \d+\); only the classifier')):
    train.start_from(ex.initial_state(), ex.model, str(path), ex.replicated)


def test_reading_a_mistyped_workdir_creates_nothing(finished, tmp_path):
  config, _, _ = finished
  missing = str(tmp_path / 'mistyped')
  with pytest.raises(errors.MissingError):
    evaluation.evaluate(config, missing)
  with pytest.raises(errors.MissingError):
    weights.load(missing)
  assert not os.path.exists(missing)


def test_user_errors_are_one_line_and_bugs_keep_their_traceback(tmp_path):
  args = [sys.executable, os.path.join(REPO, 'launch.py'),
          '--config=' + os.path.join(REPO, 'configs', 'uvgg_fer2013.py'),
          f'--config.data.data_dir={tmp_path}', f'--workdir={tmp_path}/run']
  result = subprocess.run(args, env=run_env(), capture_output=True,
                          text=True, timeout=120, check=False)
  assert result.returncode == 1
  assert result.stderr.strip().splitlines() == [
      f"error: prepared data for 'fer2013' not found in {tmp_path}/fer2013/"
      '1.0.0: run python -m fer_jax.data.prepare --dataset=fer2013 '
      '--manual_dir=PATH']
  verbose = subprocess.run(args + ['--verbosity=1'], env=run_env(),
                           capture_output=True, text=True, timeout=120,
                           check=False)
  assert 'Traceback' in verbose.stderr
