import functools

import jax
import jax.numpy as jnp
from jax import lax
import numpy as np
import pytest

from fer_jax.models import batch_norm
from fer_jax.models import cpu_conv
from fer_jax.models import layers
from fer_jax.models import pooling


def _lax_conv(x, kernel, strides, padding):
  return lax.conv_general_dilated(x, kernel, strides, padding,
                                  dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


@pytest.mark.parametrize('x_shape, kernel_shape, strides, padding, path', [
    ((2, 2, 2, 8), (3, 3, 8, 4), (1, 1), 'SAME', 'valid_taps'),
    # A 1x1 map: 8 of the 9 taps fall on padding only.
    ((2, 1, 1, 8), (3, 3, 8, 4), (1, 1), 'SAME', 'valid_taps'),
    # Stride 2 with uneven SAME pads, (0, 1) and (1, 1).
    ((2, 6, 5, 4), (3, 3, 4, 6), (2, 2), 'SAME', 'valid_taps'),
    ((2, 4, 4, 6), (1, 1, 6, 5), (1, 1), 'SAME', 'valid_taps'),  # 1x1
    ((2, 8, 8, 4), (1, 1, 4, 6), (2, 2), 'VALID', 'valid_taps'),  # ResNet's
    ((2, 9, 7, 1), (3, 3, 1, 4), (1, 1), 'SAME', 'one_channel'),
    ((2, 9, 7, 3), (3, 3, 3, 5), (1, 1), 'SAME', 'column_pairs'),  # odd width
    ((2, 5, 8, 2), (3, 2, 2, 3), (1, 1), ((1, 0), (0, 1)), 'column_pairs'),
    ((2, 5, 9, 3), (2, 5, 3, 4), (1, 1), 'VALID', 'column_pairs'),
    ((2, 9, 7, 9), (3, 3, 9, 5), (1, 1), 'SAME', 'xla'),
    ((2, 9, 7, 3), (3, 3, 3, 5), (2, 2), 'SAME', 'xla'),
    ((2, 9, 7, 3), (5, 3, 3, 5), (2, 1), 'VALID', 'valid_taps'),  # 3x5 out
    ((2, 5, 5, 9), (3, 3, 9, 5), (1, 1), ((2, 0), (1, 1)), 'xla'),
])
def test_conv2d_equals_lax_conv_forward_and_both_gradients(
    x_shape, kernel_shape, strides, padding, path):
  assert cpu_conv._cpu_forward(
      x_shape, kernel_shape, strides,
      cpu_conv.pads(x_shape, kernel_shape, strides, padding)) is getattr(
          cpu_conv, f'_{path}_conv')
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=x_shape), jnp.float32)
  kernel = jnp.asarray(rng.normal(size=kernel_shape), jnp.float32)
  expected = _lax_conv(x, kernel, strides, padding)
  cotangent = jnp.asarray(rng.normal(size=expected.shape), jnp.float32)

  def grads(conv):
    return jax.jit(jax.grad(
        lambda x, k: jnp.sum(conv(x, k, strides, padding) * cotangent),
        argnums=(0, 1)))(x, kernel)

  np.testing.assert_allclose(
      jax.jit(cpu_conv.conv2d, static_argnums=(2, 3))(x, kernel, strides,
                                                    padding),
      expected, atol=1e-5)
  for ours, theirs in zip(grads(cpu_conv.conv2d), grads(_lax_conv)):
    # float32 rounding of sums of products of magnitude ~30.
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-4)


@pytest.mark.skipif(jax.default_backend() != 'cpu',
                    reason='compiler options are for XLA:CPU only')
def test_compiler_options_give_convolutions_to_xla_itself_on_cpu():
  # The CPU formulations are chosen for XLA's own convolution: with the
  # options it, not a YNNPACK fusion, runs them (an option this jaxlib did
  # not know would fail to compile).
  x = jnp.ones((4, 22, 22, 32))
  kernel = jnp.ones((3, 3, 32, 32))
  compiled = jax.jit(cpu_conv.conv2d,
                     compiler_options=cpu_conv.compiler_options()).lower(
                         x, kernel).compile().as_text()
  default = jax.jit(cpu_conv.conv2d).lower(x, kernel).compile().as_text()
  assert 'convolution(' in compiled and 'ynn_fusion' not in compiled
  assert 'ynn_fusion' in default


@pytest.mark.parametrize('x_shape, kernel, strides, padding', [
    ((2, 9, 8, 6), 3, (1, 1), 'SAME'),
    ((2, 9, 8, 6), 5, (2, 2), 'SAME'),  # TensorFlow's: one more at the end
    ((2, 8, 8, 4), 3, (2, 2), ((1, 1), (1, 1))),  # PyTorch's k // 2
])
def test_depthwise_conv_equals_grouped_lax_conv_and_gradients(
    x_shape, kernel, strides, padding):
  rng = np.random.default_rng(3)
  x = jnp.asarray(rng.normal(size=x_shape), jnp.float32)
  k = jnp.asarray(rng.normal(size=(kernel, kernel, 1, x_shape[-1])),
                  jnp.float32)

  def lax_depthwise(x, k):
    return lax.conv_general_dilated(
        x, k, strides, padding, dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
        feature_group_count=x.shape[-1])

  def ours(x, k):
    return cpu_conv.depthwise_conv2d(x, k, strides, padding)

  expected = lax_depthwise(x, k)
  np.testing.assert_allclose(jax.jit(ours)(x, k), expected, atol=1e-5)
  cotangent = jnp.asarray(rng.normal(size=expected.shape), jnp.float32)
  grads = [jax.grad(lambda x, k: jnp.sum(f(x, k) * cotangent),
                    argnums=(0, 1))(x, k) for f in (ours, lax_depthwise)]
  for a, b in zip(*grads):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize('path', ['_cpu_max_pool', '_xla_max_pool'])
@pytest.mark.parametrize('window, stride, padding', [(2, 2, 0), (3, 2, 1)])
def test_max_pool_and_its_gradient_equal_flax_with_odd_sizes(
    window, stride, padding, path):
  # Each platform's path, and max_pool itself (the CPU's here).
  ours = functools.partial(getattr(pooling, path), window=window,
                           stride=stride, padding=padding)
  import flax.linen as nn  # pylint: disable=g-import-not-at-top
  x = jnp.asarray(np.random.default_rng(4).normal(size=(2, 11, 9, 3)),
                  jnp.float32)
  expected = nn.max_pool(x, (window, window), (stride, stride),
                         ((padding, padding), (padding, padding)))
  np.testing.assert_array_equal(pooling.max_pool(x, window, stride, padding),
                                expected)
  np.testing.assert_array_equal(ours(x), expected)
  cotangent = jnp.asarray(
      np.random.default_rng(5).normal(size=expected.shape), jnp.float32)
  grads = [jax.grad(lambda x: jnp.sum(pool(x) * cotangent))(x) for pool in (
      ours, lambda x: pooling.max_pool(x, window, stride, padding),
      lambda x: nn.max_pool(x, (window, window), (stride, stride),
                            ((padding, padding), (padding, padding))))]
  np.testing.assert_array_equal(grads[0], grads[2])
  np.testing.assert_array_equal(grads[1], grads[2])


def test_max_pool_gradient_goes_to_the_first_of_tied_maxima():
  x = jnp.zeros((1, 5, 4, 2)).at[0, 3, 1].set(1.)
  grad = jax.grad(lambda x: jnp.sum(pooling.max_pool(x, 2)))(x)
  expected = np.zeros((1, 5, 4, 2), np.float32)
  expected[0, 0:4:2, 0:4:2] = 1.  # ties: the top-left element of each window
  expected[0, 2:4, 0:2] = 0.
  expected[0, 3, 1] = 1.  # the one maximum of its window
  np.testing.assert_array_equal(grad, expected)


def test_depthwise_in_batch_chunks_equals_lax(monkeypatch):
  # A budget of one image: 3 chunks in the gradients.
  monkeypatch.setattr(cpu_conv, '_DEPTHWISE_CHUNK_BYTES', 6 * 7 * 5 * 8)
  rng = np.random.default_rng(5)
  x = jnp.asarray(rng.normal(size=(3, 6, 7, 5)), jnp.float32)
  k = jnp.asarray(rng.normal(size=(3, 3, 1, 5)), jnp.float32)
  pads = ((1, 1), (1, 1))
  cotangent = jnp.asarray(rng.normal(size=(3, 6, 7, 5)), jnp.float32)

  def grads(conv):
    out, vjp = jax.vjp(lambda x, k: conv(x, k, (1, 1), pads), x, k)
    return (out, *vjp(cotangent))

  for ours, theirs in zip(grads(cpu_conv._cpu_depthwise),
                          grads(cpu_conv._xla_depthwise)):
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)


def _autodiff_batch_norm_act(x, scale, bias, slope, epsilon):
  mean = jnp.mean(x, axis=(0, 1, 2))
  var = jnp.mean(x * x, axis=(0, 1, 2)) - mean * mean
  z = (x - mean) / jnp.sqrt(var + epsilon) * scale + bias
  return jnp.where(z >= 0, z, slope * z), mean, var


@pytest.mark.parametrize('path', ['batch_norm_act', '_fused_batch_norm_act',
                                  '_plain_batch_norm_act'])
def test_batch_norm_act_gradient_equals_autodiff(path):
  # batch_norm_act is the CPU's path here; each platform's path is tested.
  rng = np.random.default_rng(6)
  normal = lambda *shape: jnp.asarray(rng.normal(size=shape), jnp.float32)
  x = normal(3, 5, 7, 4) * 2 + 1
  params = (x, normal(4), normal(4), normal(4))
  cotangents = (normal(3, 5, 7, 4), normal(4), normal(4))
  ours, theirs = [jax.vjp(lambda *p: f(*p, 1e-3), *params)
                  for f in (getattr(batch_norm, path),
                            _autodiff_batch_norm_act)]
  for a, b in zip(ours[0], theirs[0]):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
  for a, b in zip(ours[1](cotangents), theirs[1](cotangents)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('activation', [None, 'relu', 'prelu'])
def test_batch_norm_equals_flax_batch_norm_then_activation(activation):
  import flax.linen as nn  # pylint: disable=g-import-not-at-top

  class Reference(nn.Module):
    @nn.compact
    def __call__(self, x, train):
      x = nn.BatchNorm(not train, momentum=0.9)(x)
      if activation == 'prelu':
        return layers.PReLU()(x)
      return nn.relu(x) if activation == 'relu' else x

  rng = np.random.default_rng(7)
  x = jnp.asarray(rng.normal(size=(4, 3, 5, 6)) * 3 - 1, jnp.float32)
  cotangent = jnp.asarray(rng.normal(size=x.shape), jnp.float32)
  ours = layers.BatchNorm(False, momentum=0.9, activation=activation)
  variables = ours.init(jax.random.key(0), x)
  bn = {k: v for k, v in variables['params'].items() if k != 'slope'}
  # Non-trivial parameters and running statistics.
  bn = jax.tree.map(lambda v: v + jnp.arange(6) / 7, bn)
  stats = jax.tree.map(lambda v: v + jnp.arange(6) / 5,
                       variables['batch_stats'])
  slope = {'slope': jnp.linspace(-0.5, 0.7, 6)}
  theirs = {'params': {'BatchNorm_0': bn}, 'batch_stats': {
      'BatchNorm_0': stats}}
  variables = {'params': bn, 'batch_stats': stats}
  if activation == 'prelu':
    theirs['params']['PReLU_0'] = slope
    variables['params'] = {**bn, **slope}

  def train(apply, variables):
    def loss(params):
      out, updates = apply({**variables, 'params': params}, x)
      return jnp.sum(out * cotangent), (out, updates['batch_stats'])
    return jax.grad(loss, has_aux=True)(variables['params'])

  grads, (out, new_stats) = train(
      lambda v, x: ours.apply(v, x, mutable=['batch_stats']), variables)
  ref_grads, (ref_out, ref_stats) = train(
      lambda v, x: Reference().apply(v, x, True, mutable=['batch_stats']),
      theirs)
  np.testing.assert_allclose(out, ref_out, rtol=1e-5, atol=1e-5)
  for name in ('mean', 'var'):
    np.testing.assert_allclose(new_stats[name],
                               ref_stats['BatchNorm_0'][name], rtol=1e-6)
  for name in ('scale', 'bias'):
    np.testing.assert_allclose(grads[name], ref_grads['BatchNorm_0'][name],
                               rtol=1e-4, atol=1e-5)
  if activation == 'prelu':
    np.testing.assert_allclose(grads['slope'], ref_grads['PReLU_0']['slope'],
                               rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(
      layers.BatchNorm(True, activation=activation).apply(variables, x),
      Reference().apply(theirs, x, False), rtol=1e-5, atol=1e-5)


def test_batch_norm_rejects_an_unknown_activation():
  with pytest.raises(ValueError, match="activation='gelu'"):
    layers.BatchNorm(False, activation='gelu')


def test_torch_dense_is_initialised_as_pytorch_linear():
  # nn.Linear(256, 512): kernel and bias U(-1/16, 1/16), std 1/(16 sqrt 3).
  params = layers.torch_dense(512, 256).init(jax.random.key(0),
                                             jnp.zeros((1, 256)))['params']
  for name, values in params.items():
    values = np.asarray(values)
    assert np.abs(values).max() <= 1 / 16, name
    np.testing.assert_allclose(values.std(), 1 / (16 * np.sqrt(3)),
                               rtol=0.1, err_msg=name)


def test_squeeze_excite_with_the_pool_before_its_scale_equals_pool_after():
  # VGG's stage ends pool before SE's scale (`before_scale`); values and
  # gradients must be those of SE then the pool. Half the map is zero, as
  # after a ReLU: exact ties, whose gradient goes to the first of them.
  rng = np.random.default_rng(8)
  x = jnp.asarray(np.maximum(rng.normal(size=(3, 7, 6, 32)), 0), jnp.float32)
  cotangent = jnp.asarray(rng.normal(size=(3, 3, 3, 32)), jnp.float32)
  se = layers.SqueezeExcite(reduction=8, activation='mish')
  variables = se.init(jax.random.key(0), x)
  pool = lambda x: pooling.max_pool(x, 2)
  paths = {
      'pool after the scale': lambda v, x: pool(se.apply(v, x)),
      'pool before the scale': lambda v, x: se.apply(v, x, before_scale=pool),
  }
  outs, grads = {}, {}
  for name, f in paths.items():
    outs[name], vjp = jax.vjp(f, variables, x)
    grads[name] = vjp(cotangent)
  np.testing.assert_array_equal(*outs.values())
  for a, b in zip(*map(jax.tree.leaves, grads.values())):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
