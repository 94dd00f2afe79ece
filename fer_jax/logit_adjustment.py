"""Post-hoc logit adjustment (Menon et al., ICLR 2021): a trained model's
logits minus tau times the log of the training class prior, with tau chosen
on the selection split to maximise balanced accuracy.

  python -m fer_jax.logit_adjustment --workdir=runs/RUN [--data_dir=DIR]

evaluates the run's selected checkpoint on its selection split (FER2013's
PublicTest; never a test split), tries tau over `TAUS`, and records the best
in `RUN/logit_adjustment.json` with the prior, the checkpoint step and the
balanced accuracy before and after. From then on the run's model is the
adjusted one wherever it is used: `launch.py --mode=eval` (its
`eval/<split>.json` says which tau), `Predictor.load`, `python -m
fer_jax.export` (an exported file, .msgpack or .onnx, carries the shift; a file exported
before this existed loads with none) and `fer_jax.report`
(`tests/test_predict.py::
test_a_recorded_logit_adjustment_is_applied_by_eval_predict_and_export`
checks that all give the same probabilities). A run trained with `config.loss.logit_adjustment` already
aims at balanced error; tau is then chosen on top of it, 0 included.
"""
import json
import os

from absl import app
from absl import flags
import ml_collections
import numpy as np

from fer_jax import errors
from fer_jax import experiment
from fer_jax import files
from fer_jax import metrics as metrics_lib
from fer_jax import weights

TAUS = tuple(np.round(np.arange(0, 2.001, 0.05), 2))


def balanced_accuracy(labels, scores, num_classes):
  """Of the classes whose `scores` (per image and class) are highest."""
  return metrics_lib.balanced_accuracy(metrics_lib.confusion_matrix(
      labels, np.argmax(scores, -1), num_classes))


def choose_tau(labels, probabilities, log_prior, taus=TAUS):
  """(tau, balanced accuracy) maximising the balanced accuracy of
  log p - tau log prior; ties go to the smallest tau."""
  log_p = np.log(np.maximum(np.asarray(probabilities, np.float64), 1e-30))
  scores = [balanced_accuracy(labels, log_p - tau * log_prior,
                              len(log_prior)) for tau in taus]
  best = int(np.argmax(scores))
  return float(taus[best]), scores[best]


def fit(workdir, data_dir=None, taus=TAUS):
  """Chooses tau among `taus` for the run in `workdir` and records it;
  returns the record."""
  w = weights.load(workdir, key='--workdir', log=experiment.log)
  if w.config is None or w.step is None:
    raise errors.UserError(f'--workdir={workdir}: not a training run')
  config = ml_collections.ConfigDict(w.config.to_dict())
  split = config.selection_split
  if not split:
    raise errors.UserError(
        f'{workdir}: the run has no selection split to choose tau on')
  config.data.eval_splits = (split,)
  if data_dir:
    config.data.data_dir = data_dir
  ex = experiment.Experiment(config, training=False, count_classes=True)
  rows = ex.evaluate(w.variables, predictions=True)[split]['predictions']
  labels = np.asarray([label for _, label, _ in rows])
  probabilities = np.asarray([p for _, _, p in rows])
  log_prior = experiment.log_prior(ex.data.class_counts)
  tau, after = choose_tau(labels, probabilities, log_prior, taus)
  record = {
      'tau': tau, 'chosen_on': split, 'step': int(w.step),
      'class_names': list(ex.data.class_names),
      'training_class_counts': ex.data.class_counts.tolist(),
      'logit_shift': (-tau * log_prior).tolist(),
      'balanced_accuracy': {
          'before': balanced_accuracy(labels, probabilities,
                                      len(log_prior)),
          'after': after},
      'taus_tried': [float(t) for t in taus]}
  files.write(os.path.join(workdir, weights.LOGIT_ADJUSTMENT),
              [json.dumps(record, indent=1) + '\n'])
  return record


def main(argv):
  del argv
  f = flags.FLAGS
  if not f.workdir:
    raise app.UsageError('--workdir is required')
  record = errors.report(fit, f.workdir, f.data_dir, verbose=f.verbosity >= 1)
  before, after = (record['balanced_accuracy'][k] for k in ('before', 'after'))
  print(f"tau {record['tau']:g} on {record['chosen_on']} (checkpoint step "
        f"{record['step']}): balanced accuracy {before:.2%} -> {after:.2%}; "
        f'recorded in {os.path.join(f.workdir, weights.LOGIT_ADJUSTMENT)}')


if __name__ == '__main__':
  flags.DEFINE_string('workdir', None, 'The training run to adjust.')
  flags.DEFINE_string('data_dir', None,
                      'Where the dataset is, if not where the run read it.')
  app.run(main)
