"""EfficientNet-B0 (Tan & Le, 2019), the backbone of the EfficientFace study.

The architecture is exactly that of the `efficientnet-pytorch` package (which
carries the official TensorFlow weights) and of torchvision's
`efficientnet_b0`; `fer_jax.convert` maps either's weights onto it. The two
differ only where this module has a field:
  * `padding`: 'same' is TensorFlow's SAME (stride-2 convs pad one pixel more
    at the bottom/right), as the official weights and efficientnet-pytorch;
    'symmetric' is PyTorch's k // 2 on every side, as torchvision and timm.
  * BatchNorm: efficientnet-pytorch uses eps 1e-3 and momentum 0.01 (0.99
    here, Flax counts the other way); torchvision eps 1e-5, momentum 0.1.
MBConv blocks: 1x1 expansion (not in the first stage) -> depthwise kxk ->
squeeze-and-excitation (to a quarter of the block's input channels, SiLU,
sigmoid) -> 1x1 projection, with a residual and stochastic depth (drop rate
0.2 * block index / 16) when the shape allows. 5,288,548 parameters with
1000 classes.
"""
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from fer_jax import errors
from fer_jax.models import layers

# (expansion, kernel, stride, output channels, repeats) per stage of B0.
STAGES = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2),
          (6, 3, 2, 80, 3), (6, 5, 1, 112, 3), (6, 5, 2, 192, 4),
          (6, 3, 1, 320, 1))
# TensorFlow's and torchvision's initialisation for training from scratch.
he_fan_out = nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')


class MBConv(nn.Module):
  """Mobile inverted bottleneck with squeeze-and-excitation."""
  features: int
  expansion: int
  kernel: int
  stride: int
  drop_rate: float
  padding: str
  norm: type[nn.Module]
  dtype: jnp.dtype

  @nn.compact
  def __call__(self, x, train):
    inputs, channels = x, x.shape[-1]
    hidden = channels * self.expansion
    conv = lambda *a, **k: layers.Conv(*a, use_bias=False,
                                       kernel_init=he_fan_out,
                                       dtype=self.dtype, **k)
    if self.expansion != 1:
      x = conv(hidden, (1, 1), name='expand_conv')(x)
      x = nn.silu(self.norm(name='expand_bn')(x))
    pad = ('SAME' if self.padding == 'same' else
           layers.pytorch_pads((self.kernel, self.kernel)))
    x = conv(hidden, (self.kernel, self.kernel), (self.stride, self.stride),
             pad, depthwise=True, name='depthwise_conv')(x)
    x = nn.silu(self.norm(name='depthwise_bn')(x))
    s = jnp.mean(x, axis=(1, 2), keepdims=True)
    s = nn.silu(layers.Conv(max(1, channels // 4), (1, 1), dtype=self.dtype,
                            name='se_reduce')(s))
    x = x * nn.sigmoid(layers.Conv(hidden, (1, 1), dtype=self.dtype,
                                   name='se_expand')(s))
    x = self.norm(name='project_bn')(
        conv(self.features, (1, 1), name='project_conv')(x))
    if self.stride != 1 or channels != self.features:
      return x
    if train and self.drop_rate:
      # Stochastic depth: drop the whole branch for some images.
      keep = 1 - self.drop_rate
      mask = jax.random.bernoulli(self.make_rng('dropout'), keep,
                                  (x.shape[0], 1, 1, 1))
      x = jnp.where(mask, x / keep, 0)
    return x + inputs


class EfficientNetB0(nn.Module):
  """EfficientNet-B0; see the module docstring."""
  num_classes: int = 1000
  dropout: float = 0.2
  drop_connect: float = 0.2  # stochastic depth rate of the last block
  padding: str = 'same'  # same | symmetric
  bn_epsilon: float = 1e-3
  bn_momentum: float = 0.99
  dtype: jnp.dtype = jnp.float32  # activations; parameters stay float32

  @nn.compact
  def __call__(self, x, train=False):
    # Flax's BatchNorm keeps its statistics and reductions in float32.
    norm = functools.partial(nn.BatchNorm, use_running_average=not train,
                             momentum=self.bn_momentum,
                             epsilon=self.bn_epsilon, dtype=self.dtype)
    x = x.astype(self.dtype)
    pad = 'SAME' if self.padding == 'same' else layers.pytorch_pads((3, 3))
    x = layers.Conv(32, (3, 3), (2, 2), pad, use_bias=False,
                    kernel_init=he_fan_out, dtype=self.dtype,
                    name='stem_conv')(x)
    x = nn.silu(norm(name='stem_bn')(x))
    blocks = sum(repeats for *_, repeats in STAGES)
    index = 0
    for expansion, kernel, stride, features, repeats in STAGES:
      for i in range(repeats):
        x = MBConv(features, expansion, kernel, stride if i == 0 else 1,
                   self.drop_connect * index / blocks, self.padding, norm,
                   self.dtype, name=f'block{index}')(x, train)
        index += 1
    x = layers.Conv(1280, (1, 1), use_bias=False, kernel_init=he_fan_out,
                    dtype=self.dtype, name='head_conv')(x)
    x = nn.silu(norm(name='head_bn')(x))
    x = jnp.mean(x, axis=(1, 2))
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return nn.Dense(self.num_classes, dtype=self.dtype, name='classifier')(x)

  def __post_init__(self):
    if self.padding not in ('same', 'symmetric'):
      raise errors.UserError(
          f'config.model.padding={self.padding!r}: expected '
          "'same' or 'symmetric'")
    super().__post_init__()
