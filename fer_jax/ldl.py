"""Label distribution learning: the loss against a teacher's distributions,
and the distances between distributions that the LDL literature reports.

Loss (EfficientFace, Zhao et al. AAAI 2021). The target of an image is
  t = (1 - lambda) * softmax(teacher logits / T) + lambda * onehot(label)
and the loss is the cross-entropy -sum_c t_c log softmax(student)_c, whose
gradient is that of KL(t || student) (they differ by t's entropy, a
constant). Two reductions over a batch of N images and K classes:
- 'class_mean': the mean over N x K entries, as EfficientFace's code
  (main.py: torch.mean(-target * log(prob))); 1/K of the per-image value.
- 'sample_mean': the per-image sum over classes, mean over the batch (the
  EfficientNet study's Eq. 2). With lambda = 1 it is the one-hot
  cross-entropy itself.
The reduction sets the effective learning rate (K = 7 times apart), so it
belongs to the recipe; `tests/test_ldl.py` checks both against direct
formulas.

Distances (Geng, "Label Distribution Learning", TKDE 2016), between a
target distribution p (the teacher's) and a prediction q (the student's),
each per image: Chebyshev max|p - q|, Clark sqrt(sum (p - q)^2 / (p + q)^2),
Canberra sum |p - q| / (p + q), KL sum p ln(p / q) (lower is better);
cosine p.q / (|p| |q|), intersection sum min(p, q) (higher is better).
`EPS` keeps 0/0 and log 0 finite, as implementations of these measures do.
"""
import jax
import jax.numpy as jnp

REDUCTIONS = ('class_mean', 'sample_mean')
EPS = 1e-12
DISTANCES = ('chebyshev', 'clark', 'canberra', 'kl', 'cosine', 'intersection')


def targets(teacher_logits, labels, temperature=1.0, onehot_weight=0.0):
  """(N, K) target distributions from teacher logits and integer labels."""
  soft = jax.nn.softmax(teacher_logits / temperature)
  if not onehot_weight:
    return soft
  onehot = jax.nn.one_hot(labels, teacher_logits.shape[-1])
  return (1 - onehot_weight) * soft + onehot_weight * onehot


def per_image_loss(logits, target, reduction):
  """Each image's loss, so that class weights can scale it; its batch mean
  is the loss under `reduction`."""
  cross_entropy = -jnp.sum(target * jax.nn.log_softmax(logits), axis=-1)
  if reduction == 'class_mean':
    return cross_entropy / logits.shape[-1]
  if reduction == 'sample_mean':
    return cross_entropy
  raise ValueError(f'reduction={reduction!r}: expected one of {REDUCTIONS}')


def kl_divergence(p, logits):
  """KL(p || softmax(logits)) of each image, from logits for accuracy."""
  return jnp.sum(p * (jnp.log(p + EPS) - jax.nn.log_softmax(logits)),
                 axis=-1)


def distances(p, q):
  """{name: (N,) values} of each measure in `DISTANCES`, p the target."""
  diff = jnp.abs(p - q)
  total = p + q + EPS
  return {
      'chebyshev': jnp.max(diff, axis=-1),
      'clark': jnp.sqrt(jnp.sum((diff / total) ** 2, axis=-1)),
      'canberra': jnp.sum(diff / total, axis=-1),
      'kl': jnp.sum(p * jnp.log((p + EPS) / (q + EPS)), axis=-1),
      'cosine': jnp.sum(p * q, axis=-1) / (
          jnp.linalg.norm(p, axis=-1) * jnp.linalg.norm(q, axis=-1) + EPS),
      'intersection': jnp.sum(jnp.minimum(p, q), axis=-1),
  }
