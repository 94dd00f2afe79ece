"""config.dtype='bfloat16': the demo model trains as in float32, and the
bounds are tight enough that a bfloat16 BatchNorm statistic or a bfloat16
loss breaks them."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import demo
from fer_jax import models
from fer_jax import optim
from fer_jax import steps
from fer_jax.data import fer_synth
from fer_jax.models import batch_norm
from fer_jax.models import cpu_conv

STEPS = 4
BATCH = 64
# Between what bfloat16 activations cost (the rounding of the weights and
# images is systematic, so a larger batch does not remove it) and what a
# bfloat16 loss or BatchNorm statistic adds: the geometric means of the
# two, measured with `pytest -s` (it prints them): loss 3.1e-3 against
# 9.1e-3, statistics 9.4e-3 against 4.0e-2 (compiled as the suite compiles,
# conftest.py, the loss differs by 2.9e-3).
LOSS_BOUND = 5.3e-3
STATS_BOUND = 1.9e-2


@pytest.fixture(scope='module')
def setup():
  """(step(dtype) -> jitted train step, forward(dtype) -> jitted training
  loss, batches, initial state, the float32 losses of its trajectory, the
  float32 training loss and statistics of the initial state on each
  batch)."""
  config = demo.get_config()
  rng = np.random.default_rng(0)
  faces = np.stack([fer_synth.render_face(i % 7, rng)
                    for i in range(STEPS * BATCH)])
  batches = [{'image': faces[i:i + BATCH, 2:46, 2:46, None] / 255.,
              'label': np.arange(i, i + BATCH) % 7}
             for i in range(0, len(faces), BATCH)]
  lr_fn = optim.learning_rate_fn(config, steps_per_epoch=100)
  tx = optim.create_optimizer(config, lr_fn)
  sharding = jax.sharding.NamedSharding(
      jax.sharding.Mesh(jax.devices(), ('data',)),
      jax.sharding.PartitionSpec())
  initial = steps.create_train_state(models.create(config.model, 7), tx,
                                     (44, 44, 1), jax.random.key(0), sharding)

  def step(dtype):
    return jax.jit(functools.partial(
        steps.train_step, model=models.create(config.model, 7, dtype), tx=tx,
        lr_fn=lr_fn), compiler_options=cpu_conv.compiler_options())

  def forward(dtype):
    # The first step's loss and batch statistics need no gradient: each
    # measurement compiles a forward pass, not a whole train step.
    return jax.jit(functools.partial(
        steps.training_loss, model=models.create(config.model, 7, dtype)),
                   compiler_options=cpu_conv.compiler_options())

  forward32 = forward('float32')
  first = [forward32(initial.params, initial.batch_stats, batch, _first_key())
           for batch in batches]
  state, losses, step32 = initial, [], step('float32')
  for batch in batches:
    state, metrics = step32(state, batch, jax.random.key(1))
    losses.append(float(metrics['loss']))
  return step, forward, batches, initial, losses, first


def _first_key():
  """train_step's dropout key on the first step."""
  return jax.random.fold_in(jax.random.key(1), 0)


def _first_batch_statistics(batch_stats):
  """The first BatchNorm's batch mean and variance, from the running ones
  after one update from the initial state (mean 0, variance 1, momentum
  0.9)."""
  stats = batch_stats['BatchNorm_0']
  return stats['mean'] / 0.1, (stats['var'] - 0.9) / 0.1


def _deviations(setup, dtype):
  """The first step's training loss and statistics in `dtype` against
  float32's, on each batch: (max |loss difference|, max difference of the
  first BatchNorm's batch statistics, in standard deviations for the mean
  and relative for the variance)."""
  _, forward, batches, initial, _, first = setup
  forward = forward(dtype)
  loss_diff, stats_diff = 0., 0.
  for batch, (want_loss, (_, want_stats)) in zip(batches, first):
    loss, (_, stats) = forward(initial.params, initial.batch_stats, batch,
                               _first_key())
    loss_diff = max(loss_diff, abs(float(loss) - float(want_loss)))
    (mean, var), (want_mean, want_var) = map(_first_batch_statistics,
                                             (stats, want_stats))
    stats_diff = max(stats_diff, float(np.max(np.abs(mean - want_mean)
                                              / np.sqrt(want_var))),
                     float(np.max(np.abs(var - want_var) / want_var)))
  return loss_diff, stats_diff


def test_bfloat16_trains_as_float32(setup):
  step, _, batches, initial, losses, _ = setup
  loss_diff, stats_diff = _deviations(setup, 'bfloat16')
  print(f'bfloat16 against float32: loss {loss_diff:.2e}, first BatchNorm '
        f'statistics {stats_diff:.2e}')
  assert loss_diff < LOSS_BOUND and stats_diff < STATS_BOUND
  # Trained on its own: the same run, in float32 parameters, statistics,
  # optimiser state and loss.
  state, bf16_losses, bf16 = initial, [], step('bfloat16')
  for batch in batches:
    state, metrics = bf16(state, batch, jax.random.key(1))
    bf16_losses.append(metrics['loss'])
  print('losses float32', np.round(losses, 4), 'bfloat16',
        np.round(bf16_losses, 4))
  np.testing.assert_allclose(bf16_losses, losses, atol=2e-2)
  assert {x.dtype for x in jax.tree.leaves(
      (state.params, state.batch_stats, state.opt_state, bf16_losses))
          if jnp.issubdtype(x.dtype, jnp.floating)} == {jnp.dtype('float32')}


def test_bounds_break_with_bfloat16_statistics(setup, monkeypatch):
  stats = batch_norm._batch_stats  # pylint: disable=protected-access
  monkeypatch.setattr(batch_norm, '_batch_stats',
                      lambda x: stats(x.astype(jnp.bfloat16)))
  stats_diff = _deviations(setup, 'bfloat16')[1]
  print(f'bfloat16 statistics: {stats_diff:.2e}')
  assert stats_diff > STATS_BOUND


def test_bounds_break_with_a_bfloat16_loss(setup, monkeypatch):
  monkeypatch.setattr(steps, 'loss_precision',
                      lambda logits: logits.astype(jnp.bfloat16))
  loss_diff = _deviations(setup, 'bfloat16')[0]
  print(f'bfloat16 loss: {loss_diff:.2e}')
  assert loss_diff > LOSS_BOUND
