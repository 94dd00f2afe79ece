"""VGG19 with BatchNorm, and the U-Net-based VGG19 (U-VGG19) built on it.

`vgg19` is the baseline of WuJie1010/Facial-Expression-Recognition.Pytorch
(models/vgg.py): 16 3x3 convolutions with bias, BatchNorm and ReLU, a 2x2 max
pool after each of the five stages, then (at a 44x44 input the map is 1x1)
flatten -> Dropout(0.5) -> Dense(512 -> 7).

`uvgg19` is the model of "U-Net-based VGG19" (Chinese Journal of Engineering,
2025). The paper leaves three things open; the choices, and why:
  * SE placement. "An SE module is embedded after each convolutional layer":
    we put one after every conv (conv -> BN -> PReLU -> SE), reduction 16,
    the placement whose parameter count matches the paper's 20.7M at 44x44x1
    (one SE per stage would give 20.52M); `tests/test_models.py::
    test_uvgg19_parameter_count_and_the_delta_of_each_switch` pins the count
    and what each switch adds, `python -m fer_jax.bench --summary` prints it.
  * PReLU slopes: one per channel (PyTorch's `nn.PReLU(channels)`), which is
    what the 20.7M count admits; a shared slope changes it by 5.5k only.
    With BatchNorm they are `BatchNorm_k/slope`: `layers.BatchNorm` applies
    the activation itself, for a cheaper gradient.
  * Skip geometry. Stage outputs are taken after their max pool (44x44 input:
    x1 22x22x64, x2 11x11x128, x3 5x5x256, x4 2x2x512). "The shallow feature is
    cropped to the size of the deep feature and concatenated": stage 4 takes
    conv1x1(cat(centre_crop(x2), x3)) -> 256 channels, stage 5 takes
    conv1x1(cat(centre_crop(x1), x4)) -> 512 channels. The fusions are linear
    1x1 convs with bias, each followed by the next stage's conv-BN-PReLU.
Each stage's output (`stage1`..`stage5`) and the fused skip features entering
stages 4 and 5 (`fused_skip4`, `fused_skip5`) are sown into the
'intermediates' collection, and each SE module sows its channel weights, for
the paper's feature-map figures (`fer_jax.figures`); `apply(...,
mutable=['intermediates'])` returns them, training does not keep them.
The head: global average pool -> Dropout(0.5) -> 1x1 conv (512 -> classes) ->
Dense(classes -> classes).

Every difference between the two is a field of `VGG`, so the paper's ablation
table is a set of configs: `vgg19` is `VGG` with all switches off.
"""
import functools

import flax.linen as nn
import jax.numpy as jnp

from fer_jax import errors
from fer_jax.models import layers
from fer_jax.models import pooling

STAGES = ((2, 64), (2, 128), (4, 256), (4, 512), (4, 512))


class VGG(nn.Module):
  """VGG19 and its U-Net variant; see the module docstring."""
  num_classes: int = 7
  width: float = 1.0  # multiplies every channel count
  use_bn: bool = True
  activation: str = 'relu'  # relu | prelu
  use_se: bool = False
  se_activation: str = 'relu'  # relu | mish
  se_reduction: int = 16
  use_skips: bool = False
  head: str = 'dense'  # dense | gap_conv
  dropout: float = 0.5
  dtype: jnp.dtype = jnp.float32  # activations; parameters stay float32

  def channels(self, c):
    return max(1, round(c * self.width))

  def conv_block(self, x, features, train, pool=False):
    x = layers.Conv(features, dtype=self.dtype)(x)
    if self.use_bn:
      # PyTorch's BatchNorm2d defaults: momentum 0.1 (0.9 here), eps 1e-5.
      x = layers.BatchNorm(use_running_average=not train, momentum=0.9,
                           epsilon=1e-5, activation=self.activation,
                           dtype=self.dtype)(x)
    elif self.activation == 'prelu':
      x = layers.PReLU()(x)
    else:
      x = nn.relu(x)
    pool_fn = (lambda x: pooling.max_pool(x, 2)) if pool else None
    if self.use_se:
      # The stage's pool goes before SE's scale: the same values, and the
      # scale and its gradient run on a quarter of the pixels.
      return layers.SqueezeExcite(self.se_reduction, self.se_activation,
                                  dtype=self.dtype)(x, before_scale=pool_fn)
    return pool_fn(x) if pool else x

  def fuse(self, shallow, deep, features):
    shallow = layers.centre_crop(shallow, deep.shape[1], deep.shape[2])
    return layers.Conv(features, (1, 1), dtype=self.dtype)(
        jnp.concatenate([shallow, deep], axis=-1))

  @nn.compact
  def __call__(self, x, train=False):
    x = x.astype(self.dtype)
    outputs = []
    for i, (convs, c) in enumerate(STAGES):
      if self.use_skips and i in (3, 4):
        x = self.fuse(outputs[4 - i], x, x.shape[-1])
        self.sow('intermediates', f'fused_skip{i + 1}', x)
      for k in range(convs):
        x = self.conv_block(x, self.channels(c), train, pool=k == convs - 1)
      self.sow('intermediates', f'stage{i + 1}', x)
      outputs.append(x)

    if self.head == 'dense':
      x = x.reshape(x.shape[0], -1)
      x = nn.Dropout(self.dropout, deterministic=not train)(x)
      return layers.torch_dense(self.num_classes, x.shape[-1], self.dtype)(x)
    x = jnp.mean(x, axis=(1, 2), keepdims=True)
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    x = layers.Conv(self.num_classes, (1, 1), dtype=self.dtype)(x).reshape(
        x.shape[0], -1)
    return layers.torch_dense(self.num_classes, x.shape[-1], self.dtype)(x)

  def __post_init__(self):
    for field, value, allowed in (
        ('activation', self.activation, ('relu', 'prelu')),
        ('se_activation', self.se_activation, tuple(layers.ACTIVATIONS)),
        ('head', self.head, ('dense', 'gap_conv'))):
      if value not in allowed:
        raise errors.UserError(
            f'config.model.{field}={value!r}: expected one of '
            f'{allowed}')
    if self.width <= 0:
      raise errors.UserError(f'config.model.width={self.width}: expected > 0')
    super().__post_init__()


vgg19 = VGG
uvgg19 = functools.partial(
    VGG, activation='prelu', use_se=True, se_activation='mish',
    use_skips=True, head='gap_conv')
