import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from conftest import init_variables
from fer_jax import models


def _count(name, shape=(1, 44, 44, 1), num_classes=7, **fields):
  model = models.create(ml_collections.ConfigDict(dict(name=name, **fields)),
                        num_classes=num_classes)
  variables = jax.eval_shape(
      lambda: model.init(jax.random.key(0), jnp.zeros(shape)))
  return sum(np.prod(x.shape) for x in jax.tree.leaves(variables['params']))


def test_vgg19_has_the_ancestor_repositorys_parameter_count():
  assert _count('vgg19') == 20_037_831


def test_uvgg19_parameter_count_and_the_delta_of_each_switch():
  full = _count('uvgg19')
  assert full == 20_743_255  # the paper quotes 20.7M
  # One SE (r=16, with biases) after each of the 16 convs.
  assert full - _count('uvgg19', use_se=False) == 305_880
  # Two 1x1 fusions: (128+256)*256+256 and (64+512)*512+512.
  assert full - _count('uvgg19', use_skips=False) == 393_984
  # One PReLU slope per channel of every conv.
  assert full - _count('uvgg19', activation='relu') == 5_504
  # gap_conv head: 1x1 conv 512->7 then Dense 7->7, vs Dense 512->7.
  assert full - _count('uvgg19', head='dense') == 56
  # Mish has no parameters.
  assert _count('uvgg19', se_activation='relu') == full
  # BatchNorm scale and offset: 2 per channel of every conv.
  assert _count('vgg19') - _count('vgg19', use_bn=False) == 11_008


def test_uvgg19_logits_and_batch_stats_at_small_width():
  model = models.create(ml_collections.ConfigDict(
      dict(name='uvgg19', width=1 / 16)), num_classes=7)
  x = jax.random.normal(jax.random.key(0), (3, 44, 44, 1))
  variables = init_variables(model, x.shape[1:], seed=1)
  logits, updates = jax.jit(lambda v: model.apply(
      v, x, train=True, mutable=['batch_stats'],
      rngs={'dropout': jax.random.key(2)}))(variables)
  assert logits.shape == (3, 7)
  assert np.all(np.isfinite(logits))
  before = jax.tree.leaves(variables['batch_stats'])
  after = jax.tree.leaves(updates['batch_stats'])
  assert any(not np.allclose(a, b) for a, b in zip(before, after))


@pytest.mark.parametrize('fields, message', [
    (dict(name='resnet9'), "config.model.name='resnet9'"),
    (dict(name='vgg19', depth=3), 'config.model.depth'),
    (dict(name='uvgg19', activation='gelu'), "config.model.activation='gelu'"),
    (dict(name='uvgg19', width=0.0), 'config.model.width=0.0'),
    (dict(name='vgg19', dtype='bfloat16'),
     'config.model.dtype: set config.dtype instead'),
])
def test_bad_model_config_names_the_key(fields, message):
  with pytest.raises(ValueError, match=message.replace('.', r'\.')):
    models.create(ml_collections.ConfigDict(fields), num_classes=7)


def test_efficientnet_b0_and_resnet50_have_the_reference_counts():
  shape = (1, 224, 224, 3)
  assert _count('efficientnet_b0', shape, num_classes=1000) == 5_288_548
  assert _count('resnet50', shape, num_classes=1000) == 25_557_032
  # EfficientFace's 7 RAF-DB classes (efficientnet-pytorch: 4,016,515).
  assert _count('efficientnet_b0', shape) == 4_016_515


def test_multiply_adds_are_counted_as_the_papers_count_them():
  def macs(name, shape):
    model = models.create(ml_collections.ConfigDict(dict(name=name)), 1000)
    return models.macs_per_image(model, shape)

  params, resnet = macs('resnet50', (224, 224, 3))
  assert params == 25_557_032
  assert 4.08e9 < resnet < 4.11e9  # torchvision's ResNet-50: 4.09 GMACs
  assert 0.38e9 < macs('efficientnet_b0', (224, 224, 3))[1] < 0.40e9  # 0.39
  # VGG19 at 44x44: the 16 convs and the classifier, counted by hand.
  sizes = [44] * 2 + [22] * 2 + [11] * 4 + [5] * 4 + [2] * 4
  channels = [1, 64, 64, 128, 128] + [256] * 4 + [512] * 8
  convs = sum(s * s * 9 * cin * cout for s, cin, cout in
              zip(sizes, channels[:-1], channels[1:]))
  assert macs('vgg19', (44, 44, 1))[1] == convs + 512 * 1000


def test_bad_dtype_names_the_key():
  with pytest.raises(ValueError, match=r"config\.dtype='float16'"):
    models.create(ml_collections.ConfigDict(dict(name='vgg19')), 7,
                  'float16')


@pytest.mark.parametrize('name, shape, fields', [
    ('uvgg19', (4, 44, 44, 1), dict(width=1 / 16)),
    ('efficientnet_b0', (2, 32, 32, 3), {}),
    ('resnet50', (2, 32, 32, 3), {}),
])
def test_bfloat16_activations_with_float32_parameters_and_statistics(
    name, shape, fields):
  config = ml_collections.ConfigDict(dict(name=name, **fields))
  f32, bf16 = (models.create(config, 7, dtype)
               for dtype in ('float32', 'bfloat16'))
  x = jax.random.uniform(jax.random.key(0), shape)
  dtypes = lambda tree: jax.tree.map(lambda v: v.dtype, tree)
  variables = jax.eval_shape(f32.init, jax.random.key(1), x)
  assert dtypes(jax.eval_shape(bf16.init, jax.random.key(1), x)) == dtypes(
      variables)
  logits, stats = jax.eval_shape(lambda v: bf16.apply(
      v, x, train=True, mutable=['batch_stats'],
      rngs={'dropout': jax.random.key(2)}), variables)
  assert logits.dtype == jnp.bfloat16
  assert set(jax.tree.leaves(dtypes(stats))) == {jnp.dtype('float32')}
  if name != 'uvgg19':
    return  # compiling the 224-pixel models in bfloat16 takes a minute
  # The project's own convolutions, BatchNorm and pooling in bfloat16: a
  # fresh model's logits agree to bfloat16's precision over its depth.
  variables = init_variables(f32, shape[1:], seed=1)
  want, got = (jax.jit(model.apply)(variables, x) for model in (f32, bf16))
  assert got.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(got, np.float32), want,
                             atol=0.03 * np.abs(want).max())
