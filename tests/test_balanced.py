"""Training and choosing for balanced error: the logit-adjusted loss, label
smoothing, post-hoc tau, balanced accuracy and selection by it."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn import metrics as sklearn_metrics

from fer_jax import logit_adjustment
from fer_jax import metrics
from fer_jax import steps
from fer_jax import weights


def test_logit_adjusted_loss_and_gradient_equal_a_hand_computed_case():
  # Logits (2, 1, 0) for label 1; prior (0.5, 0.3, 0.2); tau = 1: the loss
  # is the cross-entropy of (2 + ln 0.5, 1 + ln 0.3, ln 0.2), whose softmax
  # is proportional to (e^2 * 0.5, e * 0.3, 0.2).
  logits = jnp.asarray([[2.0, 1.0, 0.0]])
  shift = jnp.log(jnp.asarray([0.5, 0.3, 0.2]))
  e = np.e
  weights_ = np.asarray([e**2 * 0.5, e * 0.3, 0.2])
  softmax = weights_ / weights_.sum()
  loss, grad = jax.value_and_grad(
      lambda l: steps.one_hot_loss(l, jnp.asarray([1]), 0.0, shift)[0])(logits)
  np.testing.assert_allclose(loss, -np.log(softmax[1]), rtol=1e-6)
  np.testing.assert_allclose(grad[0], softmax - [0, 1, 0], rtol=1e-5,
                             atol=1e-7)
  # Without the shift it is the plain cross-entropy.
  plain = np.exp([2.0, 1.0, 0.0]) / np.exp([2.0, 1.0, 0.0]).sum()
  np.testing.assert_allclose(
      steps.one_hot_loss(logits, jnp.asarray([1]))[0], -np.log(plain[1]),
      rtol=1e-6)


def test_label_smoothing_mixes_the_one_hot_target_with_the_uniform():
  logits = jnp.asarray([[2.0, 1.0, 0.0]])
  log_softmax = np.log(np.exp([2.0, 1.0, 0.0]) / np.exp([2.0, 1.0, 0.0]).sum())
  target = 0.9 * np.asarray([1, 0, 0]) + 0.1 / 3
  np.testing.assert_allclose(
      steps.one_hot_loss(logits, jnp.asarray([0]), 0.1)[0],
      -np.sum(target * log_softmax), rtol=1e-6)


@pytest.mark.filterwarnings('ignore:y_pred contains classes not in y_true')
def test_balanced_accuracy_equals_scikit_learn_with_an_absent_class():
  rng = np.random.default_rng(0)
  truth = rng.choice([0, 1, 3], 200, p=[0.7, 0.2, 0.1])  # class 2 absent
  predicted = rng.integers(0, 4, 200)
  confusion = sklearn_metrics.confusion_matrix(truth, predicted,
                                               labels=range(4))
  np.testing.assert_allclose(
      metrics.balanced_accuracy(confusion),
      sklearn_metrics.balanced_accuracy_score(truth, predicted))


def test_post_hoc_tau_undoes_a_prior_the_model_learnt():
  # A model whose probabilities carry the training prior on top of an
  # even-handed score: tau = 1 removes it, and the balanced accuracy rises.
  rng = np.random.default_rng(1)
  prior = np.asarray([0.6, 0.3, 0.1])
  labels = np.repeat([0, 1, 2], 200)
  scores = rng.normal(size=(600, 3)) + 1.0 * np.eye(3)[labels]
  logits = scores + np.log(prior)
  probabilities = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
  tau, after = logit_adjustment.choose_tau(labels, probabilities,
                                           np.log(prior))
  before = logit_adjustment.balanced_accuracy(labels, np.log(probabilities), 3)
  assert 0.6 <= tau <= 1.4
  assert after > before + 0.05
  # Ties go to the smallest tau: a prior-free model keeps tau 0.
  tau, _ = logit_adjustment.choose_tau(labels, np.eye(3)[labels] * 0.8 + 0.1,
                                       np.log(prior))
  assert tau == 0.0


def test_the_selection_metric_chooses_the_checkpoint():
  history = [{'step': 1, 'eval': {'validation': {
      'accuracy': 0.7, 'balanced_accuracy': 0.4}}},
             {'step': 2, 'eval': {'validation': {
                 'accuracy': 0.6, 'balanced_accuracy': 0.5}}}]
  assert weights.selected(history, 'validation')['step'] == 1
  assert weights.selected(history, 'validation',
                          'balanced_accuracy')['step'] == 2
  # A run saved before selection_metric existed selected on accuracy.
  assert weights.selection({'selection_split': 'validation'}) == (
      'validation', 'accuracy')
