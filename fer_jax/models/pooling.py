"""Max pooling: `max_pool`.

On CPU it is written as elementwise maxima of strided slices, with a
hand-written gradient for windows that tile the map (`_cpu_max_pool`):
XLA:CPU lowers the reduce-window's gradient to index arrays and a scatter,
and a reshape-and-max to a slow reduction, while `maximum`'s gradient is
elementwise (`python -m fer_jax.bench` times a VGG step). On GPU and TPU it
is XLA's reduce-window (`_xla_max_pool`). The choice is
`lax.platform_dependent`'s, as in `cpu_conv`. `tests/test_layers.py`
compares both with `flax.linen.max_pool`, forward and gradients.
"""
import functools

import jax
import jax.numpy as jnp
from jax import lax

from fer_jax.models.cpu_conv import taps


def _pool_windows(x, window, stride):
  return taps(x, (window, window), (stride, stride), ((0, 0), (0, 0)))


def _max_of_windows(x, window, stride):
  return functools.reduce(jnp.maximum,
                          _pool_windows(x, window, stride).values())


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _tiled_max_pool(x, window):
  """Max pool with stride = window. Its gradient goes to the first maximum
  of each window in row-major order, as PyTorch's and XLA's do, and is
  written as one interleave of the per-tap gradients, where autodiff of the
  `maximum` chain makes a pad and a tie division per tap."""
  return _max_of_windows(x, window, window)


def _tiled_max_pool_fwd(x, window):
  y = _tiled_max_pool(x, window)
  return y, (x, y)


def _tiled_max_pool_bwd(window, residuals, grad):
  x, y = residuals
  taken = jnp.zeros(y.shape, bool)
  grads = {}
  for tap, window_of_x in _pool_windows(x, window, window).items():
    first = (window_of_x == y) & ~taken
    taken = taken | first
    grads[tap] = jnp.where(first, grad, 0.)
  batch, rows, cols, channels = y.shape
  grad_x = jnp.stack(
      [jnp.stack([grads[i, j] for j in range(window)], axis=3)
       for i in range(window)], axis=2).reshape(
           batch, rows * window, cols * window, channels)
  # Rows and columns past the last whole window get no gradient.
  return (jnp.pad(grad_x, ((0, 0), (0, x.shape[1] - rows * window),
                           (0, x.shape[2] - cols * window), (0, 0))),)


_tiled_max_pool.defvjp(_tiled_max_pool_fwd, _tiled_max_pool_bwd)


def max_pool(x, window, stride=None, padding=0):
  """Max pool over window x window patches, `padding` pixels of -inf around:
  `nn.max_pool`'s values (VALID after the padding, floor) and gradient (to
  the first maximum of a window that tiles the map)."""
  stride = stride or window
  return lax.platform_dependent(
      x, cpu=functools.partial(_cpu_max_pool, window=window, stride=stride,
                               padding=padding),
      default=functools.partial(_xla_max_pool, window=window, stride=stride,
                                padding=padding))


def _xla_max_pool(x, window, stride, padding):
  pads = ((0, 0), (padding, padding), (padding, padding), (0, 0))
  return lax.reduce_window(x, -jnp.inf, lax.max, (1, window, window, 1),
                           (1, stride, stride, 1), pads)


def _cpu_max_pool(x, window, stride, padding):
  """Windows that tile the map (stride = window, no padding, VGG's) have the
  gradient of `_tiled_max_pool`; among exact ties elsewhere the gradient is
  shared."""
  if stride == window and padding == 0:
    return _tiled_max_pool(x, window)
  pads = ((padding, padding),) * 2
  x = jnp.pad(x, ((0, 0), *pads, (0, 0)), constant_values=-jnp.inf)
  return _max_of_windows(x, window, stride)
