"""Evaluation metrics equal scikit-learn's."""
import numpy as np
import pytest

from sklearn import metrics as sklearn_metrics

from fer_jax import metrics



@pytest.mark.parametrize('seed', [0, 1, 2])
def test_report_equals_scikit_learn(seed):
  rng = np.random.default_rng(seed)
  names = [f'c{i}' for i in range(7)]
  truth = rng.integers(0, 7, 300)
  predicted = np.where(rng.random(300) < 0.5, truth, rng.integers(0, 7, 300))
  if seed == 1:
    predicted[predicted == 3] = 4  # a class never predicted
  if seed == 2:
    truth[truth == 5] = 6  # a class never present
  confusion = sklearn_metrics.confusion_matrix(truth, predicted,
                                               labels=range(7))
  got = metrics.report(confusion, names)
  assert got['confusion'] == confusion.tolist()
  assert got['accuracy'] == pytest.approx(
      sklearn_metrics.accuracy_score(truth, predicted))
  p, r, f, s = sklearn_metrics.precision_recall_fscore_support(
      truth, predicted, labels=range(7), zero_division=0)
  for c, name in enumerate(names):
    assert got['classes'][name] == pytest.approx(
        {'precision': p[c], 'recall': r[c], 'f1': f[c], 'support': s[c]})
  for average in ('macro', 'micro', 'weighted'):
    p, r, f, _ = sklearn_metrics.precision_recall_fscore_support(
        truth, predicted, labels=range(7), average=average, zero_division=0)
    assert got[average] == pytest.approx(
        {'precision': p, 'recall': r, 'f1': f}), average
  np.testing.assert_allclose(
      got['confusion_normalized'],
      sklearn_metrics.confusion_matrix(truth, predicted, labels=range(7),
                                       normalize='true'), atol=1e-12)
