"""Evaluating a saved checkpoint: `evaluate(config, workdir)`, what
`launch.py --mode=eval` runs.

It reads the checkpoint's model variables only (no optimiser state), on any
number of devices or processes whatever wrote it, and writes each split's
metrics and per-image predictions (`fer_jax.eval_files`).
"""
import jax

from fer_jax import eval_files
from fer_jax import experiment
from fer_jax import teacher as teacher_lib
from fer_jax import weights
from fer_jax import workdir as workdir_lib


def evaluate(config, workdir, checkpoint_step='selected'):
  """{split: results} of a checkpoint of the run in `workdir`:
  `checkpoint_step` is 'selected' (by the run's selection split), 'latest'
  or a step. `config` must describe the same run (`workdir.check_same_run`
  says what may differ: eval crop and splits, where the data is)."""
  ex = experiment.Experiment(config, training=False)
  mngr = ex.checkpoints(workdir)
  step, run = weights.find_checkpoint(mngr, workdir, checkpoint_step,
                                      experiment.log)
  workdir_lib.check_same_run(run['config'], config.to_dict(), workdir, 'eval')
  teacher_lib.check_same(run.get('teacher'), ex.teacher, workdir)
  abstract = ex.initial_state(abstract=True)
  variables = weights.restore_variables(
      mngr, step, {'params': abstract.params,
                   'batch_stats': abstract.batch_stats})
  results = ex.evaluate(variables, predictions=True)
  which = (checkpoint_step if checkpoint_step in ('selected', 'latest')
           else 'step')
  if jax.process_index() == 0:
    for split, result in results.items():
      eval_files.write_predictions(workdir, split, result.pop('predictions'),
                                   ex.data.class_names)
      eval_files.write_report(workdir, split, result, ex.data.class_names,
                              step, which, config.data.eval_crop)
  experiment.log(f'checkpoint step {step}: {config.data.eval_crop}-crop '
                 f'accuracy {eval_files.accuracies(results)}')
  for split, r in results.items():
    if 'kl' in r:
      experiment.log(f'Student against teacher on {split}: '
                     f'{eval_files.distances(r)}')
  return results
