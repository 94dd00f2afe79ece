"""Evaluating a saved checkpoint: `evaluate(config, workdir)`, what
`launch.py --mode=eval` runs.

It reads the checkpoint's model variables only (no optimiser state), on any
number of devices or processes whatever wrote it, and writes each split's
metrics and per-image predictions (`fer_jax.eval_files`), with the run's
post-hoc logit adjustment applied when one was recorded
(`fer_jax.logit_adjustment`).
"""
import jax

from fer_jax import eval_files
from fer_jax import experiment
from fer_jax import metrics as metrics_lib
from fer_jax import robustness
from fer_jax import teacher as teacher_lib
from fer_jax import weights
from fer_jax import workdir as workdir_lib
from fer_jax.data import pipeline


def shifted_results(ex, variables, split, result, logit_shift=None):
  """{'shifts': {name: scores}} of `split` as stored ('none', `result`) and
  under each of `robustness.SHIFTS`, each labelled whether the run's
  training augments with it."""
  names = ex.data.class_names
  datasets = {
      name: pipeline.eval_dataset(
          robustness.shifted_source(ex.data.eval_sources[split], shift),
          ex.config.data, ex.config.eval_batch_size)
      for name, (shift, _, _) in robustness.SHIFTS.items()}
  shifted = ex.evaluate(variables, logit_shift=logit_shift, datasets=datasets)
  scores = lambda r: metrics_lib.scores(
      metrics_lib.report(r['confusion'], names))
  shifts = {'none': dict(scores(result), what='as stored',
                         augmented_in_training=None)}
  for name, (_, what, seen) in robustness.SHIFTS.items():
    shifts[name] = dict(scores(shifted[name]), what=what,
                        augmented_in_training=bool(seen(ex.config.data)))
  return {'split': split, 'shifts': shifts}


def evaluate(config, workdir, checkpoint_step='selected', robustness=False):
  """{split: results} of a checkpoint of the run in `workdir`:
  `checkpoint_step` is 'selected' (by the run's selection split), 'latest'
  or a step. `config` must describe the same run (`workdir.check_same_run`
  says what may differ: eval crop and splits, where the data is). With
  `robustness`, each split is evaluated under `robustness.SHIFTS` too
  (eval/<split>_robustness.json)."""
  ex = experiment.Experiment(config, training=False)
  mngr = ex.checkpoints(workdir, read_only=True)
  step, run = weights.find_checkpoint(mngr, workdir, checkpoint_step,
                                      experiment.log)
  workdir_lib.check_same_run(run['config'], config.to_dict(), workdir, 'eval')
  if ex.teacher is not None:
    problem = teacher_lib.difference(run.get('teacher'), ex.teacher)
    if problem:
      experiment.log(f'The distances to the teacher are omitted: {problem}.')
      ex.set_teacher(None)
  abstract = ex.initial_state(abstract=True)
  variables = weights.restore_variables(
      mngr, step, {'params': abstract.params,
                   'batch_stats': abstract.batch_stats})
  # The run's post-hoc logit adjustment, if one was chosen for it.
  logit_shift, tau = weights.read_logit_adjustment(workdir)
  results = ex.evaluate(variables, predictions=True, logit_shift=logit_shift)
  which = (checkpoint_step if checkpoint_step in ('selected', 'latest')
           else 'step')
  if jax.process_index() == 0:
    for split, result in results.items():
      eval_files.write_predictions(workdir, split, result.pop('predictions'),
                                   ex.data.class_names)
      eval_files.write_report(workdir, split, result, ex.data.class_names,
                              step, which, config.data.eval_crop, tau)
  if robustness:
    for split, result in results.items():
      record = shifted_results(ex, variables, split, result, logit_shift)
      if jax.process_index() == 0:
        eval_files.write_robustness(workdir, split, dict(
            record, step=step, crop=config.data.eval_crop, tau=tau))
      experiment.log(f'{split} under shifts: ' + ', '.join(
          f"{name} {r['accuracy']:.2%}" for name, r in record['shifts'].items()))
  adjusted = f', logit adjustment tau {tau:g}' if logit_shift is not None else ''
  experiment.log(f'checkpoint step {step}{adjusted}: '
                 f'{config.data.eval_crop}-crop '
                 f'{eval_files.accuracies(results)}')
  for split, r in results.items():
    if 'kl' in r:
      experiment.log(f'Student against teacher on {split}: '
                     f'{eval_files.distances(r)}')
  return results
