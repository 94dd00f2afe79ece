"""Models by name: `create(config.model, num_classes, config.dtype)`."""
import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from fer_jax import errors
from fer_jax.models import layers
from fer_jax.models import efficientnet
from fer_jax.models import resnet
from fer_jax.models import vgg

MODELS = {'vgg19': vgg.vgg19, 'uvgg19': vgg.uvgg19,
          'efficientnet_b0': efficientnet.EfficientNetB0,
          'resnet50': resnet.ResNet50}


DTYPES = ('float32', 'bfloat16')


def create(model_config, num_classes, dtype='float32'):
  """The Flax module named by `model_config.name`, other fields as overrides.

  `dtype` (one of DTYPES) is the activations'. Parameters, BatchNorm
  statistics and the loss stay float32 in every model (mixed precision for
  GPUs and TPUs; on CPU bfloat16 is emulated and slower), so a checkpoint is
  the same in either and restores into both.
  """
  kwargs = dict(model_config)
  name = kwargs.pop('name')
  kwargs.pop('init_from', None)  # weights to start from, not a module field
  if dtype not in DTYPES:
    raise errors.UserError(f'config.dtype={dtype!r}: expected one of {DTYPES}')
  if 'dtype' in kwargs:
    raise errors.UserError('config.model.dtype: set config.dtype instead')
  if name not in MODELS:
    raise errors.UserError(
        f'config.model.name={name!r}: unknown model; expected '
        f'one of {sorted(MODELS)}')
  module_class = getattr(MODELS[name], 'func', MODELS[name])
  fields = {f.name for f in dataclasses.fields(module_class)}
  for key in kwargs:
    if key not in fields or key in ('parent', 'name'):
      raise errors.UserError(
          f'config.model.{key}: not a field of model {name!r}')
  return MODELS[name](num_classes=num_classes, dtype=jnp.dtype(dtype),
                      **kwargs)


def macs_per_image(model, input_shape):
  """(parameters, multiply-adds of every convolution and dense layer).

  Counted for one image as the papers' tables count them (EfficientNet-B0
  0.39 G, ResNet-50 4.1 G at 224x224), not from XLA's cost analysis, which
  sees the CPU formulations and the elementwise work.
  """
  total = 0

  def count(next_fun, args, kwargs, context):
    nonlocal total
    out = next_fun(*args, **kwargs)
    module = context.module
    if context.method_name == '__call__' and isinstance(module, layers.Conv):
      cin = 1 if module.depthwise else args[0].shape[-1]
      total += (np.prod(out.shape[1:3]) * np.prod(module.kernel_size) * cin
                * module.features)
    elif context.method_name == '__call__' and isinstance(module, nn.Dense):
      total += np.prod(args[0].shape[1:]) * module.features
    return out

  with nn.intercept_methods(count):
    variables = jax.eval_shape(lambda: model.init(
        jax.random.key(0), jnp.zeros((1, *input_shape))))
  params = sum(np.prod(x.shape) for x in jax.tree.leaves(
      variables['params']))
  return int(params), int(total)
