"""The Flax modules the models are built from: convolution, BatchNorm with
its activation, PReLU, squeeze-excitation, and their initialisers.

The computation behind them lives beside this file: `cpu_conv` (the
convolutions and their per-platform formulations), `batch_norm` (the fused
BatchNorm and activation) and `pooling` (max pooling).
"""
import flax.linen as nn
import jax
import jax.numpy as jnp

from fer_jax.models import batch_norm
from fer_jax.models import cpu_conv


# PyTorch's default convolution initialisation (kaiming_uniform with a=sqrt(5),
# i.e. variance 1/(3 fan_in)), which the ancestor repository trains with. He
# initialisation made the 16-layer VGG stall at chance for hundreds of steps.
conv_init = nn.initializers.variance_scaling(1 / 3, 'fan_in', 'uniform')


def torch_dense(features, fan_in, dtype=jnp.float32):
  """`nn.Dense` initialised as PyTorch's `nn.Linear`: kernel and bias
  U(-1/sqrt(fan_in), 1/sqrt(fan_in)). With flax's default (lecun normal, zero
  bias) VGG19 at width 0.25 trailed the same model in PyTorch by about 6
  points after 3 epochs of FER2013 (same batches, same optimiser step)."""
  bound = fan_in ** -0.5

  def bias_init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return nn.Dense(features, kernel_init=conv_init, bias_init=bias_init,
                  dtype=dtype)


def pytorch_pads(kernel_size):
  """PyTorch's symmetric padding k // 2 (torchvision, timm), not TF's SAME."""
  return tuple((k // 2, k // 2) for k in kernel_size)


class Conv(nn.Module):
  """A 2D convolution; parameters named as in `flax.linen.Conv`.

  `depthwise`: one filter per input channel (features must equal them).
  `padding`: 'SAME' (TensorFlow's: extra pixel at the end), 'VALID' or
  explicit ((top, bottom), (left, right)).
  `dtype`: of the computation and the output; the parameters stay float32
  (the Flax `dtype`/`param_dtype` split, as every layer here).
  """
  features: int
  kernel_size: tuple[int, int] = (3, 3)
  strides: tuple[int, int] = (1, 1)
  padding: str | tuple = 'SAME'
  use_bias: bool = True
  depthwise: bool = False
  kernel_init: nn.initializers.Initializer = conv_init
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    x = x.astype(self.dtype)
    if self.depthwise:
      kernel = self.param('kernel', self.kernel_init,
                          (*self.kernel_size, 1, self.features))
      y = cpu_conv.depthwise_conv2d(x, kernel.astype(self.dtype),
                                    self.strides, self.padding)
    else:
      kernel = self.param('kernel', self.kernel_init,
                          (*self.kernel_size, x.shape[-1], self.features))
      y = cpu_conv.conv2d(x, kernel.astype(self.dtype), self.strides,
                          self.padding)
    if self.use_bias:
      y = y + self.param('bias', nn.initializers.zeros,
                         (self.features,)).astype(self.dtype)
    return y


def mish(x):
  """Mish (Misra, 2019): x * tanh(softplus(x))."""
  return x * jnp.tanh(jax.nn.softplus(x))


ACTIVATIONS = {'relu': nn.relu, 'mish': mish}


class PReLU(nn.Module):
  """PReLU with one slope per channel, initialised to 0.25 as in PyTorch."""

  @nn.compact
  def __call__(self, x):
    slope = self.param('slope', nn.initializers.constant(0.25),
                       (x.shape[-1],))
    return batch_norm.leaky(x, slope.astype(x.dtype))


class BatchNorm(nn.Module):
  """`flax.linen.BatchNorm` over all axes but the last (same variables,
  statistics and momentum rule), fused with the activation after it.

  `activation`: None, 'relu', or 'prelu' (one slope per channel, initialised
  to 0.25 as PyTorch's `nn.PReLU(channels)`, stored here as `slope`).
  Statistics and normalisation are computed in float32 whatever `dtype`, the
  output's (`batch_norm`).

  The running variance accumulates the biased batch variance (divided by
  n = batch x height x width), as Flax does, where PyTorch's BatchNorm2d
  accumulates the unbiased one (divided by n - 1): a factor n / (n - 1),
  under 0.4% for the batches and feature maps here (n >= 256); weights
  converted from PyTorch (`fer_jax.convert`) keep PyTorch's values.
  """
  use_running_average: bool
  momentum: float = 0.99
  epsilon: float = 1e-5
  activation: str | None = None
  dtype: jnp.dtype = jnp.float32

  def __post_init__(self):
    if self.activation not in (None, 'relu', 'prelu'):
      raise ValueError(f'BatchNorm activation={self.activation!r}: expected '
                       "None, 'relu' or 'prelu'")
    super().__post_init__()

  @nn.compact
  def __call__(self, x):
    x = x.astype(self.dtype)
    channels = x.shape[-1]
    mean = self.variable('batch_stats', 'mean', jnp.zeros, (channels,))
    var = self.variable('batch_stats', 'var', jnp.ones, (channels,))
    scale = self.param('scale', nn.initializers.ones, (channels,))
    bias = self.param('bias', nn.initializers.zeros, (channels,))
    if self.activation == 'prelu':
      slope = self.param('slope', nn.initializers.constant(0.25),
                         (channels,))
    else:
      slope = jnp.full((channels,), 1.0 if self.activation is None else 0.0)
    if self.use_running_average:
      return batch_norm.leaky(batch_norm.normalise(
          x.astype(jnp.float32), mean.value, var.value, scale, bias,
          self.epsilon), slope).astype(self.dtype)
    out, batch_mean, batch_var = batch_norm.batch_norm_act(
        x, scale, bias, slope, self.epsilon)
    if not self.is_initializing():
      mean.value = (self.momentum * mean.value
                    + (1 - self.momentum) * batch_mean)
      var.value = self.momentum * var.value + (1 - self.momentum) * batch_var
    return out


class SqueezeExcite(nn.Module):
  """Squeeze-and-excitation (Hu et al., 2018) with a configurable activation."""
  reduction: int = 16
  activation: str = 'relu'
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, before_scale=None):
    """`before_scale`: a map that commutes with a positive scale per channel
    (max pooling), applied to x before the channel weights (a sigmoid's,
    positive) scale it, so that the scale runs on its output, not on x."""
    x = x.astype(self.dtype)
    channels = x.shape[-1]
    s = jnp.mean(x, axis=(1, 2))  # accumulated in float32 for bfloat16 x
    hidden = max(1, channels // self.reduction)
    s = ACTIVATIONS[self.activation](
        torch_dense(hidden, channels, self.dtype)(s))
    s = nn.sigmoid(torch_dense(channels, hidden, self.dtype)(s))
    self.sow('intermediates', 'weights', s)  # for fer_jax.figures
    if before_scale is not None:
      x = before_scale(x)
    return x * s[:, None, None, :]


def centre_crop(x, height, width):
  """The centre (height, width) window of an NHWC map (U-Net's crop).

  Static slices, not indexing: with a symbolic batch size (the ONNX export,
  `fer_jax.onnx_graph`) indexing would trace to a gather."""
  y0 = (x.shape[1] - height) // 2
  x0 = (x.shape[2] - width) // 2
  x = jax.lax.slice_in_dim(x, y0, y0 + height, axis=1)
  return jax.lax.slice_in_dim(x, x0, x0 + width, axis=2)
