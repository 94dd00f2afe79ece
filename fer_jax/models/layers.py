"""Building blocks shared by the models: convolution, activations, SE."""
import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

# PyTorch's default convolution initialisation (kaiming_uniform with a=sqrt(5),
# i.e. variance 1/(3 fan_in)), which the ancestor repository trains with. He
# initialisation made the 16-layer VGG stall at chance for hundreds of steps.
conv_init = nn.initializers.variance_scaling(1 / 3, 'fan_in', 'uniform')


def conv2d(x, kernel, strides=(1, 1), padding='SAME'):
  """NHWC x HWIO convolution: the one place the models convolve."""
  return lax.conv_general_dilated(
      x, kernel, strides, padding,
      dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


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
