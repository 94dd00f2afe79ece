"""Models by name: `create(config.model, num_classes)`."""
import dataclasses

from fer_jax.models import efficientnet
from fer_jax.models import resnet
from fer_jax.models import vgg

MODELS = {'vgg19': vgg.vgg19, 'uvgg19': vgg.uvgg19,
          'efficientnet_b0': efficientnet.EfficientNetB0,
          'resnet50': resnet.ResNet50}


def create(model_config, num_classes):
  """The Flax module named by `model_config.name`, other fields as overrides."""
  kwargs = dict(model_config)
  name = kwargs.pop('name')
  kwargs.pop('init_from', None)  # weights to start from, not a module field
  if name not in MODELS:
    raise ValueError(f'config.model.name={name!r}: unknown model; expected '
                     f'one of {sorted(MODELS)}')
  module_class = getattr(MODELS[name], 'func', MODELS[name])
  fields = {f.name for f in dataclasses.fields(module_class)}
  for key in kwargs:
    if key not in fields or key in ('parent', 'name'):
      raise ValueError(f'config.model.{key}: not a field of model {name!r}')
  return MODELS[name](num_classes=num_classes, **kwargs)
