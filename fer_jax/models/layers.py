"""Building blocks shared by the models: convolution, activations, SE."""
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

# PyTorch's default convolution initialisation (kaiming_uniform with a=sqrt(5),
# i.e. variance 1/(3 fan_in)), which the ancestor repository trains with. He
# initialisation made the 16-layer VGG stall at chance for hundreds of steps.
conv_init = nn.initializers.variance_scaling(1 / 3, 'fan_in', 'uniform')


def conv2d(x, kernel, strides=(1, 1), padding='SAME'):
  """NHWC x HWIO convolution: the one place the models convolve.

  On GPU and TPU this is `lax.conv_general_dilated`. On CPU, XLA's
  convolutions are far from the machine's matmul rate for some shapes (a 3x3
  conv on a 2x2x512 map runs at ~1.5 GFLOP/s, its weight gradient on a
  22x22x128 map 2.6x slower than matmuls), so there each part of the
  convolution takes the formulation measured fastest (`_cpu_forward`,
  `_matmul_weight_grad`). The
  parameters are the same on every platform.
  """
  strides, padding = tuple(strides), _pads(x.shape, kernel.shape, strides,
                                           padding)
  return lax.platform_dependent(
      x, kernel,
      cpu=functools.partial(_cpu_conv, strides=strides, padding=padding),
      default=functools.partial(_xla_conv, strides=strides, padding=padding))


def _pads(x_shape, kernel_shape, strides, padding):
  if isinstance(padding, str):
    padding = lax.padtype_to_pads(x_shape[1:3], kernel_shape[:2], strides,
                                  padding)
  return tuple(tuple(p) for p in padding)


def _xla_conv(x, kernel, strides, padding):
  return lax.conv_general_dilated(x, kernel, strides, padding,
                                  dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


def _taps(x, kernel_shape, strides, padding):
  """The input window each kernel tap (i, j) multiplies: {(i, j): window}."""
  kh, kw = kernel_shape[:2]
  x = jnp.pad(x, ((0, 0), padding[0], padding[1], (0, 0)))
  out_h = (x.shape[1] - kh) // strides[0] + 1
  out_w = (x.shape[2] - kw) // strides[1] + 1
  return {(i, j): lax.slice(
      x, (0, i, j, 0),
      (x.shape[0], i + (out_h - 1) * strides[0] + 1,
       j + (out_w - 1) * strides[1] + 1, x.shape[3]),
      (1, strides[0], strides[1], 1))
          for i in range(kh) for j in range(kw)}


def _shifted_matmul_conv(x, kernel, strides, padding):
  """The convolution as a sum over kernel taps of matrix products."""
  return sum(jnp.einsum('bhwc,cd->bhwd', window, kernel[i, j])
             for (i, j), window in _taps(x, kernel.shape, strides,
                                         padding).items())


def _out_pixels(x_shape, kernel_shape, strides, padding):
  return (((x_shape[1] + sum(padding[0]) - kernel_shape[0]) // strides[0] + 1)
          * ((x_shape[2] + sum(padding[1]) - kernel_shape[1]) // strides[1]
             + 1))


def _cpu_forward(x_shape, kernel_shape, strides, padding):
  """The faster forward on XLA:CPU for this shape (measured, batch 64-128).

  XLA's convolution wins on maps of 5x5 and more (44x44x64: 281 ms vs 492 ms
  at batch 128) but collapses on smaller ones (2x2x512: 1163 ms vs 17 ms) and
  on a few input channels (44x44x1 -> 64: 49 ms vs 27 ms).
  """
  if (_out_pixels(x_shape, kernel_shape, strides, padding) <= 16
      or kernel_shape[2] < 8):
    return _shifted_matmul_conv
  return _xla_conv


def _matmul_weight_grad(x_shape, kernel_shape, strides, padding):
  """Whether per-tap matrix products beat XLA's weight gradient here.

  They do on large maps with many output channels (22x22, 64 -> 128: 268 ms
  vs 504 ms; 128 -> 128: 369 ms vs 957 ms, batch 128); elsewhere they tie or
  lose, by up to 5x on narrow layers (44x44, 8 -> 8: 32 ms vs 6 ms).
  """
  return (_out_pixels(x_shape, kernel_shape, strides, padding) >= 256
          and kernel_shape[3] >= 128)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _cpu_conv(x, kernel, strides, padding):
  conv = _cpu_forward(x.shape, kernel.shape, strides, padding)
  return conv(x, kernel, strides, padding)


def _cpu_conv_fwd(x, kernel, strides, padding):
  return _cpu_conv(x, kernel, strides, padding), (x, kernel)


def _cpu_conv_bwd(strides, padding, residuals, grad):
  x, kernel = residuals
  # Input gradient: the transpose of whichever forward is fast at this size.
  conv = _cpu_forward(x.shape, kernel.shape, strides, padding)
  if not _matmul_weight_grad(x.shape, kernel.shape, strides, padding):
    _, vjp = jax.vjp(lambda x, k: conv(x, k, strides, padding), x, kernel)
    return vjp(grad)
  _, input_vjp = jax.vjp(lambda x: conv(x, kernel, strides, padding), x)
  taps = _taps(x, kernel.shape, strides, padding)
  kernel_grad = jnp.stack([
      jnp.einsum('bhwc,bhwd->cd', taps[i, j], grad)
      for i in range(kernel.shape[0]) for j in range(kernel.shape[1])
  ]).reshape(kernel.shape)
  return input_vjp(grad)[0], kernel_grad


_cpu_conv.defvjp(_cpu_conv_fwd, _cpu_conv_bwd)


class Conv(nn.Module):
  """A 2D convolution with bias; parameters named as in `flax.linen.Conv`."""
  features: int
  kernel_size: tuple[int, int] = (3, 3)
  strides: tuple[int, int] = (1, 1)
  padding: str = 'SAME'

  @nn.compact
  def __call__(self, x):
    kernel = self.param('kernel', conv_init,
                        (*self.kernel_size, x.shape[-1], self.features))
    bias = self.param('bias', nn.initializers.zeros, (self.features,))
    return conv2d(x, kernel, self.strides, self.padding) + bias


def mish(x):
  """Mish (Misra, 2019): x * tanh(softplus(x))."""
  return x * jnp.tanh(jax.nn.softplus(x))


class PReLU(nn.Module):
  """PReLU with one slope per channel, initialised to 0.25 as in PyTorch."""

  @nn.compact
  def __call__(self, x):
    slope = self.param('slope', nn.initializers.constant(0.25),
                       (x.shape[-1],))
    return jnp.where(x >= 0, x, slope * x)


class SqueezeExcite(nn.Module):
  """Squeeze-and-excitation (Hu et al., 2018) with a configurable activation."""
  reduction: int = 16
  activation: str = 'relu'

  @nn.compact
  def __call__(self, x):
    channels = x.shape[-1]
    s = jnp.mean(x, axis=(1, 2))
    s = nn.Dense(max(1, channels // self.reduction))(s)
    s = ACTIVATIONS[self.activation](s)
    s = nn.sigmoid(nn.Dense(channels)(s))
    return x * s[:, None, None, :]


ACTIVATIONS = {'relu': nn.relu, 'mish': mish}


def centre_crop(x, height, width):
  """The centre (height, width) window of an NHWC map (U-Net's crop)."""
  y0 = (x.shape[1] - height) // 2
  x0 = (x.shape[2] - width) // 2
  return x[:, y0:y0 + height, x0:x0 + width]
