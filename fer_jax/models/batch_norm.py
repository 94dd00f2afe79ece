"""Training-mode BatchNorm fused with the activation after it
(`batch_norm_act`); `layers.BatchNorm` is its Flax module.

On CPU its gradient is written by hand (`_fused_batch_norm_act`), measured
faster there (`python -m fer_jax.bench`); on GPU and TPU it is autodiff of
the same forward computation (`_plain_batch_norm_act`), as XLA fuses it
there, so that the papers' GPU runs use no code timed only on a CPU. The
choice is `lax.platform_dependent`'s, as in `cpu_conv`.
`tests/test_layers.py` compares both with autodiff of the plain
composition, forward and gradients.
"""
import functools

import jax
import jax.numpy as jnp
from jax import lax


def _channel_sum(x):
  return jnp.sum(x, axis=tuple(range(x.ndim - 1)))


def _batch_stats(x):
  # E[x^2] - E[x]^2, flax's `use_fast_variance`: one pass over x.
  n = x.size // x.shape[-1]
  mean = _channel_sum(x) / n
  return mean, jnp.maximum(0., _channel_sum(x * x) / n - mean * mean)


def normalise(x, mean, var, scale, bias, epsilon):
  return (x - mean) * (scale * lax.rsqrt(var + epsilon)) + bias


def leaky(z, slope):
  return jnp.where(z < 0, slope * z, z)


def _batch_norm_act_fwd(x, scale, bias, slope, epsilon):
  # In float32 whatever x's dtype (bfloat16 sums of squares lose the
  # variance); only the output takes x's dtype.
  mean, var = _batch_stats(x.astype(jnp.float32))
  out = leaky(normalise(x.astype(jnp.float32), mean, var, scale, bias,
                        epsilon), slope)
  return (out.astype(x.dtype), mean, var), (x, mean, var, scale, bias, slope)


def batch_norm_act(x, scale, bias, slope, epsilon):
  """Training-mode BatchNorm over all axes but the last, then a leaky
  activation with one slope per channel (0: ReLU, a parameter: PReLU, 1:
  none). Returns (output, batch mean, batch variance): the output in x's
  dtype, the statistics, like every step of the computation, in float32.
  """
  return lax.platform_dependent(
      x, scale, bias, slope,
      cpu=functools.partial(_fused_batch_norm_act, epsilon=epsilon),
      default=functools.partial(_plain_batch_norm_act, epsilon=epsilon))


def _plain_batch_norm_act(x, scale, bias, slope, epsilon):
  return _batch_norm_act_fwd(x, scale, bias, slope, epsilon)[0]


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def _fused_batch_norm_act(x, scale, bias, slope, epsilon):
  """`batch_norm_act` with its gradient written by hand: two passes over
  the activations (the reductions, then the input gradient, both
  recomputing the normalised input) where autodiff of BatchNorm then the
  activation makes about twice as many on XLA:CPU."""
  return _batch_norm_act_fwd(x, scale, bias, slope, epsilon)[0]


def _batch_norm_act_bwd(epsilon, residuals, cotangents):
  x_in, mean, var, scale, bias, slope = residuals
  x = x_in.astype(jnp.float32)
  grad, grad_mean, grad_var = cotangents
  grad = grad.astype(jnp.float32)
  n = x.size // x.shape[-1]
  rstd = lax.rsqrt(var + epsilon)
  centred = x - mean
  z = normalise(x, mean, var, scale, bias, epsilon)
  grad_z = jnp.where(z < 0, slope * grad, grad)
  grad_slope = _channel_sum(jnp.where(z < 0, grad * z, 0.))
  grad_bias = _channel_sum(grad_z)
  grad_scale = _channel_sum(grad_z * centred) * rstd
  # The batch statistics' own cotangents (zero when only the output is
  # differentiated) enter through d mean/dx = 1/n, d var/dx = 2 (x - mean)/n.
  grad_x = (scale * rstd * (grad_z - grad_bias / n
                            - centred * (rstd * grad_scale / n))
            + grad_mean / n + centred * (2 * grad_var / n))
  return grad_x.astype(x_in.dtype), grad_scale, grad_bias, grad_slope


_fused_batch_norm_act.defvjp(_batch_norm_act_fwd, _batch_norm_act_bwd)
