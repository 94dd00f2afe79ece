"""What an evaluation writes in a run's workdir, and reads back:
`eval/<split>.json` (metrics of one checkpoint) and
`eval/<split>_predictions.jsonl` (each image's class probabilities).

Each file is written to a temporary name, then renamed (`files.write`), so
that a reader never sees half of one.
"""
import json
import os

from fer_jax import errors
from fer_jax import files
from fer_jax import ldl
from fer_jax import metrics as metrics_lib


def _write(workdir, name, lines):
  files.write(os.path.join(workdir, 'eval', name), lines)


def write_predictions(workdir, split, rows, class_names):
  """eval/<split>_predictions.jsonl: index in the split, label, class
  probabilities of every image."""
  _write(workdir, f'{split}_predictions.jsonl', (
      json.dumps({'index': index, 'label': class_names[label],
                  'probabilities': dict(zip(class_names, probabilities))})
      + '\n' for index, label, probabilities in rows))


def write_report(workdir, split, result, class_names, step, which, crop,
                 tau=0.0):
  """eval/<split>.json: the checkpoint (`which`: 'selected', 'latest' or
  'step', and its step), crop mode, the post-hoc logit adjustment's tau (0:
  none), loss, `metrics.report`'s accuracy, balanced accuracy, per-class and
  averaged precision/recall/F1 and confusion matrices, and for an LDL run
  the distances to the teacher."""
  record = {'split': split, 'checkpoint': which, 'step': int(step),
            'crop': crop, 'logit_adjustment_tau': tau, 'loss': result['loss'],
            **metrics_lib.report(result['confusion'], class_names)}
  if 'kl' in result:
    record['teacher_distances'] = {name: result[name]
                                   for name in ldl.DISTANCES}
  _write(workdir, f'{split}.json', [json.dumps(record, indent=1)])


def write_robustness(workdir, split, record):
  """eval/<split>_robustness.json: scores per shift (`evaluation.
  shifted_results`), with the checkpoint step, crop and tau."""
  _write(workdir, f'{split}_robustness.json',
         [json.dumps(record, indent=1)])


# Keys every record of a kind has, checked when it is read back.
_KEYS = {'': ('step', 'accuracy', 'classes'), '_robustness': ('step', 'shifts')}


def read_report(workdir, split, kind=''):
  """eval/<split><kind>.json as `write_report` (or, kind '_robustness',
  `write_robustness`) wrote it; None if there is none."""
  path = os.path.join(workdir, 'eval', f'{split}{kind}.json')
  try:
    with open(path) as f:
      record = json.load(f)
  except FileNotFoundError:
    return None
  except ValueError as e:
    record, problem = None, str(e)
  else:
    missing = [k for k in _KEYS[kind] if not isinstance(record, dict)
               or k not in record]
    problem = f"no {', '.join(missing)}" if missing else None
  if problem:
    raise errors.UserError(
        f'{path}: not an evaluation record ({problem}); write it again with '
        'launch.py --mode=eval (or delete it)')
  return record


def accuracies(results):
  """'split accuracy 12.34% (balanced 10.00%), ...' of
  `Experiment.evaluate`'s results, for the log."""
  return ', '.join(
      f"{split} accuracy {r['accuracy']:.2%}"
      + (f" (balanced {r['balanced_accuracy']:.2%})"
         if 'balanced_accuracy' in r else '')
      for split, r in results.items())


def distances(result):
  """The student's distances to its teacher in one result, for the log."""
  return ', '.join(f'{name} {result[name]:.4f}' for name in ldl.DISTANCES)
