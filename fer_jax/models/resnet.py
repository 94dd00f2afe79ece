"""ResNet-50 (He et al., 2016) exactly as torchvision's `resnet50`.

The EfficientFace study's baseline (its Table 2: 25.6M parameters, 4.1
GMACs, 80.67% on RAF-DB) and EfficientFace's label distribution generator.
torchvision's is "v1.5": the stride of a downsampling bottleneck is on its
3x3 conv. Padding is PyTorch's symmetric k // 2; BatchNorm eps 1e-5, momentum
0.1 (0.9 here). 25,557,032 parameters with 1000 classes.
"""
import functools

import flax.linen as nn
import jax.numpy as jnp

from fer_jax.models import efficientnet
from fer_jax.models import layers
from fer_jax.models import pooling

STAGES = ((64, 3), (128, 4), (256, 6), (512, 3))  # (width, bottlenecks)


class Bottleneck(nn.Module):
  """1x1 -> 3x3 (stride) -> 1x1 x4, with a projected shortcut when needed."""
  width: int
  stride: int
  norm: type[nn.Module]
  dtype: jnp.dtype

  @nn.compact
  def __call__(self, x):
    conv = lambda *a, **k: layers.Conv(
        *a, use_bias=False, kernel_init=efficientnet.he_fan_out,
        dtype=self.dtype, **k)
    shortcut = x
    if self.stride != 1 or x.shape[-1] != 4 * self.width:
      shortcut = conv(4 * self.width, (1, 1), (self.stride, self.stride),
                      'VALID', name='downsample_conv')(x)
      shortcut = self.norm(name='downsample_bn')(shortcut)
    x = nn.relu(self.norm(name='bn1')(conv(self.width, (1, 1),
                                           name='conv1')(x)))
    x = conv(self.width, (3, 3), (self.stride, self.stride),
             layers.pytorch_pads((3, 3)), name='conv2')(x)
    x = nn.relu(self.norm(name='bn2')(x))
    x = self.norm(name='bn3')(conv(4 * self.width, (1, 1), name='conv3')(x))
    return nn.relu(x + shortcut)


class ResNet50(nn.Module):
  """torchvision's ResNet-50; see the module docstring."""
  num_classes: int = 1000
  bn_epsilon: float = 1e-5
  bn_momentum: float = 0.9
  dtype: jnp.dtype = jnp.float32  # activations; parameters stay float32

  @nn.compact
  def __call__(self, x, train=False):
    norm = functools.partial(nn.BatchNorm, use_running_average=not train,
                             momentum=self.bn_momentum,
                             epsilon=self.bn_epsilon, dtype=self.dtype)
    x = layers.Conv(64, (7, 7), (2, 2), layers.pytorch_pads((7, 7)),
                    use_bias=False, kernel_init=efficientnet.he_fan_out,
                    dtype=self.dtype, name='conv1')(x.astype(self.dtype))
    x = nn.relu(norm(name='bn1')(x))
    x = pooling.max_pool(x, 3, 2, padding=1)
    for stage, (width, blocks) in enumerate(STAGES):
      for i in range(blocks):
        x = Bottleneck(width, 2 if stage and not i else 1, norm, self.dtype,
                       name=f'layer{stage + 1}_{i}')(x)
    x = x.mean(axis=(1, 2))
    return nn.Dense(self.num_classes, dtype=self.dtype, name='fc')(x)
