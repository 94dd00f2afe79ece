"""The training loop: `train_and_evaluate(config, workdir)`.

Each epoch trains `steps.train_step` over the training set, evaluates the
eval splits (`experiment.Experiment.evaluate`) and saves a checkpoint that
holds the model, the optimiser state, the data iterator's position and the
run record (config, history, sessions), so that a killed run resumes
exactly where it stopped; the checkpoint's files are written while the next
epoch trains (`checkpoint.save`). At the end the epoch chosen on the
selection split is reported and its `eval/<split>.json` written.
Evaluating a saved checkpoint is `fer_jax.evaluation.evaluate`.

Where each session's wall time goes (startup, compiling, input, steps,
evaluation, checkpoints, logging: `time_split`) is written per logging
interval (`time/*`) and per epoch (`epoch_time/*`) to metrics.jsonl and
TensorBoard, to the session's run record (`fer_jax.report`) and to the
end-of-run log; reading the clock adds no host sync to the loop.
"""
import functools
import threading
import time

import jax
import numpy as np
import tqdm

from fer_jax import checkpoint
from fer_jax import errors
from fer_jax import eval_files
from fer_jax import experiment
from fer_jax import metrics as metrics_lib
from fer_jax import steps
from fer_jax import teacher as teacher_lib
from fer_jax import time_split
from fer_jax import weights
from fer_jax import workdir as workdir_lib
from fer_jax.data import pipeline
from fer_jax.experiment import log
from fer_jax.models import cpu_conv


def start_from(state, model, path, sharding):
  """`state` with the weights at `path` (`config.model.init_from`: any path
  `weights.load` reads).

  Every variable is taken from there except a classifier whose class count
  differs, which keeps its fresh initialisation: a variable may differ in
  shape only along axes that are the class counts (theirs there, ours
  here); any other mismatch (a 1- against a 3-channel first convolution,
  say) is refused, since fresh weights there would silently train from
  scratch what the user meant to start from.
  """
  loaded = weights.load(path, key='config.model.init_from', log=log)
  fields = loaded.model
  for key, value in fields.items():
    ours = getattr(model, key, None)
    if key not in ('num_classes', 'name') and ours != value:
      raise errors.UserError(
          f'config.model.{key}={ours!r}, but the weights in '
          f'{path} need {value!r}')
  kept = []

  def take(path_, fresh):
    keys = tuple(k.key for k in path_)
    node = loaded.variables
    for key in keys:
      if key not in node:
        raise errors.UserError(
            f'{path} has no {"/".join(keys)}: not weights of '
            f'config.model.name={fields["name"]!r}?')
      node = node[key]
    if node.shape != fresh.shape:
      classes = (loaded.num_classes, model.num_classes)
      if len(node.shape) != len(fresh.shape) or any(
          (theirs, ours) != classes
          for theirs, ours in zip(node.shape, fresh.shape) if theirs != ours):
        raise errors.UserError(
            f'config.model.init_from={path!r}: its {"/".join(keys)} is '
            f'{tuple(node.shape)}, this model needs {tuple(fresh.shape)}; '
            'only the classifier (shaped by the class count) may differ')
      kept.append('/'.join(keys))
      return fresh
    return node

  variables = jax.tree_util.tree_map_with_path(
      take, {'params': state.params, 'batch_stats': state.batch_stats})
  log(f'Started from {path}; freshly initialised (class count differs): '
       f'{", ".join(kept) or "nothing"}')
  variables = jax.device_put(variables, sharding)
  return state.replace(params=variables['params'],
                       batch_stats=variables['batch_stats'])


def resume(ex, workdir, state, train_iter):
  """(manager, step, state, iterator, run record) from the latest intact
  checkpoint of the same run; step None, the inputs and an empty record on a
  fresh workdir.

  Damaged checkpoints newer than the one taken are moved aside (see
  `checkpoint.set_aside`); if every checkpoint is damaged nothing is moved
  and the run is refused, since starting over would discard its records.
  A checkpoint of another run is refused.
  """
  mngr = ex.checkpoints(workdir)
  damaged = []
  for step in reversed(mngr.all_steps()):
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
      log(f'{e}; trying the checkpoint before it.')
      damaged.append(step)
      continue
    if damaged:
      if jax.process_index() == 0:
        for bad in damaged:
          log(f'Moved damaged step {bad} to '
              f'{checkpoint.set_aside(mngr, bad)}.')
      pipeline.sync_processes(f'set aside {damaged}')
      mngr = ex.checkpoints(workdir)
    log(note or f'Resumed from {workdir} at step {step}.')
    return mngr, step, state, train_iter, run
  if damaged:
    raise errors.UserError(
        f'{workdir} holds a run whose checkpoints are all damaged (steps '
        f'{", ".join(map(str, sorted(damaged)))} in {mngr.directory}); '
        'nothing was moved or deleted. To start over, train in a new '
        'workdir, or move this one away first')
  return mngr, None, state, train_iter, {'history': []}


def _last_good(mngr, workdir):
  checkpoint.wait(mngr)  # a save in flight is the last good one
  step = mngr.latest_step()
  if step is None:
    return f'No checkpoint was saved before it: {workdir} has none to resume.'
  return f'The last good checkpoint (step {step}) is kept in {workdir}.'


def summary(history, selection_split, metric='accuracy'):
  """Final report lines: the selected epoch, and the papers' optimistic way."""
  chosen = weights.selected(history, selection_split, metric)
  how = (f"best {selection_split} {metric.replace('_', ' ')}"
         if selection_split else 'last epoch, no selection split')
  lines = [f"Selected epoch {chosen['epoch']} ({how}, checkpoint step "
           f"{chosen['step']}): {eval_files.accuracies(chosen['eval'])}"]
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
                   f'epoch: {eval_files.distances(r)}')
  return lines


def train_and_evaluate(config, workdir, config_file=None):
  """Trains, evaluating and checkpointing each epoch; resumes from workdir.

  `config_file`, the file `config` came from (launch.py's --config), is
  recorded for `fer_jax.report`'s config diff.
  """
  clock = time_split.TimeSplit(time.monotonic())
  ex = experiment.Experiment(config)
  with workdir_lib.lock(workdir):
    return _train(ex, workdir, config_file, clock)


def _in_background(fn):
  """Starts fn() in a thread; returns a function that waits for its result
  (or raises its error). A daemon thread: a run that fails meanwhile exits
  without waiting for it."""
  out = {}

  def run():
    try:
      out['value'] = fn()
    except Exception as e:  # pylint: disable=broad-except
      out['error'] = e

  thread = threading.Thread(target=run, daemon=True)
  thread.start()

  def result():
    thread.join()
    if 'error' in out:
      raise out['error']
    return out['value']
  return result


def _train(ex, workdir, config_file, clock):
  config = ex.config
  mngr, start, state, train_iter, run = resume(
      ex, workdir, ex.initial_state(), iter(ex.data.train))
  history = run['history']
  # Each process start that trains is a session: where, for how long, and
  # where the time went (`time_split`).
  session = {'started': time.strftime('%Y-%m-%d %H:%M:%S'),
             'first_step': (start or 0) + 1,
             'hardware': workdir_lib.hardware()}
  sessions = run.get('sessions', []) + [session]
  if start is None and config.model.get('init_from'):
    state = start_from(state, ex.model, config.model.init_from, ex.replicated)
  start = start or 0
  if ex.data.train_note:
    log(ex.data.train_note)
  writer = metrics_lib.MetricWriter(workdir, resume_step=start)
  step_fn = jax.jit(
      functools.partial(steps.train_step, model=ex.model, tx=ex.tx,
                        lr_fn=ex.lr_fn, class_weights=ex.data.class_weights,
                        teacher=ex.teacher, ldl_config=config.ldl,
                        label_smoothing=config.loss.label_smoothing,
                        logit_shift=ex.logit_shift),
      donate_argnums=0, compiler_options=cpu_conv.compiler_options())
  rng = jax.random.key(config.seed + 1)
  pending = []  # (step, device metrics) not yet fetched
  clock.mark('startup')
  batch = compiled_ahead = None
  if start < ex.total_steps:
    # Compiled ahead of the first step, so that compiling is timed apart,
    # and the evaluation step and the checkpoint's checks meanwhile in a
    # thread rather than at the first evaluation and save; the jitted calls
    # then find them compiled.
    variables = {'params': state.params, 'batch_stats': state.batch_stats}

    def ahead(state=state):
      if ex.data.evals:
        ex.compile_eval_step(variables)
      checkpoint.compile_checks(state)
    compiled_ahead = _in_background(ahead)
    batch = ex.global_batch(next(train_iter))
    clock.mark('input')
    step_fn.lower(state, batch, rng, ex.teacher_variables).compile()
    clock.mark('compile')

  def flush():
    # The one host sync between evaluations: at log boundaries.
    fetched = jax.device_get([m for _, m in pending])
    for (step, _), m in zip(pending, fetched):
      if not np.isfinite(m['loss']):
        raise errors.DivergedError(
            f'loss is {m["loss"]} at step {step}; stopped. '
            + _last_good(mngr, workdir))
    means = {k: float(np.mean([m[k] for m in fetched])) for k in fetched[0]}
    clock.mark('steps')  # the wait for the device
    writer.write(pending[-1][0], {**{f'train/{k}': v for k, v in means.items()},
                                  **clock.take('time')})
    pending.clear()
    return means

  # Closed on errors too, so that their one line starts a line.
  with tqdm.tqdm(total=ex.total_steps, initial=start, unit='step',
                 disable=jax.process_index() != 0) as bar:
    for step in range(start + 1, ex.total_steps + 1):
      if step > start + 1:
        batch = ex.global_batch(next(train_iter))
        clock.mark('input')
      state, step_metrics = step_fn(state, batch, rng, ex.teacher_variables)
      pending.append((step, step_metrics))
      clock.count(config.batch_size)
      clock.mark('steps')
      bar.update()
      end_of_epoch = step % ex.steps_per_epoch == 0
      if step % config.log_every == 0 or end_of_epoch:
        means = flush()
        bar.set_postfix(loss=f"{means['loss']:.3f}",
                        acc=f"{means['accuracy']:.3f}")
        clock.mark('logging')
      if end_of_epoch:
        if compiled_ahead is not None:
          compiled_ahead()  # waits only if it is still compiling
          compiled_ahead = None
          clock.mark('compile')
        # A finite loss can hide infinite BatchNorm variances or huge weights;
        # such a state is never saved as a checkpoint to go back to.
        if not checkpoint.all_finite(state):
          raise errors.DivergedError(
              f'parameters, BatchNorm statistics or optimizer state are not '
              f'finite after step {step}; stopped without saving it. '
              + _last_good(mngr, workdir))
        clock.mark('checkpoint')
        epoch = step // ex.steps_per_epoch
        results = ex.evaluate({'params': state.params,
                               'batch_stats': state.batch_stats})
        clock.mark('eval')
        history.append({'epoch': epoch, 'step': step, 'eval': results})
        writer.write(step, {f'{split}/{k}': v for split, r in results.items()
                            for k, v in r.items()})
        log(f'epoch {epoch}/{config.epochs} step {step}: '
            f'{config.data.eval_crop}-crop {eval_files.accuracies(results)}')
        selection = (results[config.selection_split][config.selection_metric]
                     if config.selection_split else None)
        clock.mark('logging')
        split = clock.session()
        session.update(last_step=step, time=split, seconds=round(
            sum(split[k] for k in time_split.KINDS), 1))
        checkpoint.save(mngr, step, state, train_iter,
                        {'config': config.to_dict(), 'history': history,
                         'config_file': config_file or run.get('config_file'),
                         'sessions': sessions,
                         'data': {'class_names': list(ex.data.class_names),
                                  'image_shape': list(ex.data.image_shape)},
                         'teacher': ex.teacher and ex.teacher.identity},
                        selection)
        clock.mark('checkpoint')
        writer.write(step, clock.take('epoch_time'))
        clock.mark('logging')
  checkpoint.wait(mngr)
  clock.mark('checkpoint')
  writer.close()
  clock.mark('logging')
  if start < ex.total_steps:
    log(time_split.describe(clock.session()))
  if history:
    for line in summary(history, config.selection_split,
                        config.selection_metric):
      log(line)
    chosen = weights.selected(history, config.selection_split,
                              config.selection_metric)
    if jax.process_index() == 0:
      for split, result in chosen['eval'].items():
        eval_files.write_report(
            workdir, split, result, ex.data.class_names, chosen['step'],
            'selected' if config.selection_split else 'latest',
            config.data.eval_crop)
  return state, history
