"""The model that ships with the package, measured: one file with its
config, class names, stored image shape and weights (flax's msgpack),
written by `python -m fer_jax.export --workdir=RUN
--output=fer_jax/pretrained/fer2013.msgpack` and read by `fer_jax.weights.load`
as every caller reads it.

  python -m fer_jax.pretrained --evaluate [--output=FILE] [--data_dir=DIR]

measures the file (by default the shipped one) on the prepared FER2013
(PublicTest, PrivateTest), through the same `Predictor` that serves photos.
Which run made the shipped file, and its measured accuracy, is in the
README and in its config (`configs/uvgg_fer2013_cpu.py`).
"""
import json
import os

from absl import app
from absl import flags
import numpy as np

from fer_jax import errors
from fer_jax import metrics as metrics_lib
from fer_jax import predict
from fer_jax import results
from fer_jax import robustness
from fer_jax import weights
from fer_jax.data import pipeline


def _confusion(predictor, source, shift=None):
  """Confusion matrix of `predictor` on every record of `source`, each
  image `shift`ed first (a `robustness.SHIFTS` function) if given."""
  labels, predicted = [], []
  for start in range(0, len(source), 256):
    records = [source[i] for i in range(start, min(start + 256, len(source)))]
    images = [np.asarray(r['image']) for r in records]
    if shift is not None:
      images = [shift(image) for image in images]
    labels += [r['label'] for r in records]
    predicted += list(np.argmax(predictor.probabilities(images), -1))
  return metrics_lib.confusion_matrix(labels, predicted,
                                      len(predictor.class_names))


def evaluate(path=weights.SHIPPED, data_dir=None,
             splits=('validation', 'test'), shifts=False):
  """{split: `metrics.report`} of an exported file on its prepared dataset
  (FER2013 for the shipped one), through `Predictor` as photos go (ten
  crops), plus 'balanced_accuracy' (the mean per-class recall); with
  `shifts`, also 'robustness': {shift: accuracy, balanced accuracy and
  macro-F1} under each of `robustness.SHIFTS`."""
  predictor = predict.Predictor.load(path)
  builder = pipeline.get_builder(predictor.config.data.name, data_dir)
  reports = {}
  for split in splits:
    source = builder.as_data_source(split=split)
    report = metrics_lib.report(_confusion(predictor, source),
                                predictor.class_names)
    if shifts:
      report['robustness'] = {
          name: dict(metrics_lib.scores(metrics_lib.report(
              _confusion(predictor, source, shift), predictor.class_names)),
                     what=what,
                     augmented_in_training=trained(predictor.config.data))
          for name, (shift, what, trained) in robustness.SHIFTS.items()}
    reports[split] = report
  return reports


def _describe(split, report):
  recalls = ', '.join(f"{name} {c['recall']:.1%}"
                      for name, c in report['classes'].items())
  return (f"{split}: ten-crop accuracy {report['accuracy']:.2%}, balanced "
          f"accuracy {report['balanced_accuracy']:.2%}, macro-F1 "
          f"{report['macro']['f1']:.3f}; recall per class: {recalls}")


def _record(path, model_path, reports):
  """Updates the result file at `path` (written by hand first: title,
  model, budget, paper...) with these figures, this commit and command."""
  try:
    with open(path) as f:
      record = json.load(f)
  except (OSError, ValueError) as e:
    raise errors.UserError(f'--record={path}: not a readable result file '
                           f'({e}); see fer_jax/results.py') from None
  record['splits'] = {
      split: {**metrics_lib.scores(r),
              'recall': {n: c['recall'] for n, c in r['classes'].items()},
              'confusion': r['confusion'],
              **({'robustness': r['robustness']} if 'robustness' in r
                 else {})}
      for split, r in reports.items()}
  record['provenance'] = (f'measured from {os.path.basename(model_path)} '
                          'by the command')
  record.pop('commit', None)
  record.pop('command', None)
  results.write(path, record)
  print(f'Written to {path}')


def main(argv):
  del argv
  f = flags.FLAGS
  if not f.evaluate:
    raise app.UsageError('--evaluate is required; to export a run, use '
                         'python -m fer_jax.export')
  reports = errors.report(evaluate, f.output, f.data_dir,
                          ('validation', 'test'), f.robustness,
                          verbose=f.verbosity >= 1)
  for split, report in reports.items():
    print(f'{f.output} on {_describe(split, report)}')
    for name, r in report.get('robustness', {}).items():
      print(f"  {name} ({r['what']}): accuracy {r['accuracy']:.2%}, "
            f"balanced {r['balanced_accuracy']:.2%}, macro-F1 "
            f"{r['macro_f1']:.3f}")
  if f.record:
    _record(f.record, f.output, reports)


if __name__ == '__main__':
  # Defined here, not at import, so that other tools can import this one.
  flags.DEFINE_string('output', weights.SHIPPED, 'The exported file to '
                      'evaluate.')
  flags.DEFINE_bool('evaluate', False, 'The accuracy of --output on its '
                    'prepared dataset.')
  flags.DEFINE_string('data_dir', None, 'TFDS data_dir.')
  flags.DEFINE_string('record', None, 'The result file (results/NAME.json) '
                      'to write the figures into.')
  flags.DEFINE_bool('robustness', False, 'Also under each named shift of '
                    'fer_jax/robustness.py.')
  app.run(main)
