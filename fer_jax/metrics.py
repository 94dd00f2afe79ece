"""Where a run's measurements go: a JSON-lines file and TensorBoard."""
import json
import os
import sys

import jax
import numpy as np

from fer_jax import errors
from fer_jax import files


def accuracy(confusion):
  """Accuracy from a confusion matrix (rows: true class, columns: predicted)."""
  return float(np.trace(confusion) / max(np.sum(confusion), 1))


def confusion_matrix(labels, predicted, num_classes):
  """Counts of (true class, predicted class): rows true, columns predicted."""
  confusion = np.zeros((num_classes, num_classes), np.int64)
  np.add.at(confusion, (np.asarray(labels), np.asarray(predicted)), 1)
  return confusion


def scores(report_):
  """The three figures a row of results gives, from a `report`."""
  return {'accuracy': report_['accuracy'],
          'balanced_accuracy': report_['balanced_accuracy'],
          'macro_f1': report_['macro']['f1']}


def balanced_accuracy(confusion):
  """The mean recall over the classes present (rows with support), as
  scikit-learn's balanced_accuracy_score."""
  confusion = np.asarray(confusion)
  support = confusion.sum(axis=1)
  present = support > 0
  if not present.any():
    return 0.0
  return float(np.mean(np.diag(confusion)[present] / support[present]))


def report(confusion, class_names):
  """Per-class precision, recall, F1 and support, their macro, micro and
  weighted averages, and the confusion matrix as counts and as rows that
  sum to 1, from a confusion matrix (rows: true class, columns: predicted).

  A class never predicted (or never present) has precision (recall) 0, as
  scikit-learn's zero_division=0; `tests/test_metrics.py` compares every
  number with scikit-learn's.
  """
  confusion = np.asarray(confusion, np.int64)
  correct = np.diag(confusion).astype(np.float64)
  support = confusion.sum(axis=1)
  predicted = confusion.sum(axis=0)
  precision = np.divide(correct, predicted, out=np.zeros_like(correct),
                        where=predicted > 0)
  recall = np.divide(correct, support, out=np.zeros_like(correct),
                     where=support > 0)
  both = precision + recall
  f1 = np.divide(2 * precision * recall, both, out=np.zeros_like(correct),
                 where=both > 0)
  total = max(int(support.sum()), 1)
  micro = float(correct.sum() / total)  # single-label: micro P = R = F1

  def average(weights):
    return {name: float(np.average(values, weights=weights))
            for name, values in (('precision', precision), ('recall', recall),
                                 ('f1', f1))}

  rows = np.maximum(support, 1)[:, None]
  return {
      'accuracy': micro,
      'balanced_accuracy': balanced_accuracy(confusion),
      'classes': {
          name: {'precision': float(precision[c]), 'recall': float(recall[c]),
                 'f1': float(f1[c]), 'support': int(support[c])}
          for c, name in enumerate(class_names)},
      'macro': average(None),
      'micro': {'precision': micro, 'recall': micro, 'f1': micro},
      'weighted': (average(support) if support.sum() else
                   {'precision': 0.0, 'recall': 0.0, 'f1': 0.0}),
      'confusion': confusion.tolist(),
      'confusion_normalized': (confusion / rows).tolist(),
  }


def complete_lines(path, lines):
  """The lines of a metrics file, less a last one cut by a kill mid-write.

  A damaged line elsewhere is an error naming the file and line.
  """
  lines = list(lines)
  for number, line in enumerate(lines, start=1):
    try:
      record = json.loads(line)
      if not isinstance(record, dict) or 'step' not in record:
        raise ValueError('no step')
    except ValueError:
      if number == len(lines) and not line.endswith('\n'):
        return lines[:-1]
      raise errors.UserError(f'{path}:{number}: not a metrics record; '
                             'expected a JSON object with a step') from None
  return lines


def _summary_writer(logdir):
  """tensorboardX's writer (flax.metrics.tensorboard imports TensorFlow),
  imported without torch: tensorboardX imports torch where it is installed,
  only to accept torch tensors, which adds seconds to every run's start;
  the values written here are Python numbers. A None entry in sys.modules makes
  `import torch` fail for that moment only."""
  hide = 'torch' not in sys.modules
  if hide:
    sys.modules['torch'] = None
  try:
    import tensorboardX  # pylint: disable=g-import-not-at-top
  finally:
    if hide:
      del sys.modules['torch']
  return tensorboardX.SummaryWriter(logdir)


class MetricWriter:
  """Appends `{"step": ..., name: value}` lines to `workdir/metrics.jsonl`.

  On resume from step S, lines written after S by the interrupted run are
  dropped, so the file reads as one uninterrupted run.
  """

  def __init__(self, workdir, resume_step=0):
    self.active = jax.process_index() == 0
    if not self.active:
      return
    self.path = os.path.join(workdir, 'metrics.jsonl')
    if os.path.exists(self.path):
      with open(self.path) as f:
        lines = [l for l in complete_lines(self.path, f)
                 if json.loads(l)['step'] <= resume_step]
      files.write(self.path, lines)
    self.tb = _summary_writer(os.path.join(workdir, 'tensorboard'))

  def write(self, step, scalars):
    if not self.active:
      return
    with open(self.path, 'a') as f:
      f.write(json.dumps({'step': int(step), **scalars}) + '\n')
    for name, value in scalars.items():
      if isinstance(value, (int, float)):
        self.tb.add_scalar(name, value, step)
    self.tb.flush()

  def close(self):
    if self.active:
      self.tb.close()
