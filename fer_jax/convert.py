"""Imports PyTorch weights of EfficientNet-B0 or ResNet-50 as an orbax checkpoint.

  python -m fer_jax.convert --from=efficientnet-pytorch \
      --model=efficientnet_b0 --input=efficientnet-b0-355c32eb.pth \
      --output=weights/effnet_b0_imagenet
  python -m fer_jax.convert --from=torchvision --model=resnet50 \
      --input=resnet50.safetensors --output=weights/resnet50_imagenet
  python -m fer_jax.convert --from=efficientface-ldg \
      --input=Pretrained_LDG.tar --output=weights/efficientface_ldg

Reads a state dict (`.pth`/`.pt` needs torch; `.safetensors` does not),
maps every tensor (OIHW -> HWIO, Linear transposed, BatchNorm statistics to
`batch_stats`) and refuses a file with missing, extra or mis-shaped tensors,
listing them. The output directory holds `variables` (orbax) and
`model.json`, the `config.model` fields the weights need (padding and
BatchNorm of the source library, class count); `config.model.init_from`
starts training from it.

A model whose classes are known can teach (`config.ldl.teacher`, see
fer_jax.teacher): `data.json` then records its class names in the order of
its outputs and the input it was trained on (crop size, crop kind,
normalisation). `--class_names` gives them for any source, with ImageNet's
input (224, RandomResizedCrop, ImageNet mean and std) unless `--mean` and
`--std` say otherwise. `efficientface-ldg` is EfficientFace's label
distribution generator (zengqunzhao/EfficientFace, Pretrained_LDG.tar): a
torch.save dict whose `state_dict` holds a torchvision-named ResNet-50 with a
7-way `fc`, keys prefixed `module.` (DataParallel), beside entries such as
`best_acc`; read with torch's weights_only loader, never by unpickling
objects. Its data.json is that repository's RAF-DB setting: folders 0-6 =
neutral, happiness, sadness, surprise, fear, disgust, anger; mean (0.575,
0.449, 0.401) and std (0.207, 0.190, 0.181) of RAF-DB (main.py); training
crops RandomResizedCrop 224.
"""
import json
import os
import shutil
import sys

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from fer_jax import errors
from fer_jax import models
from fer_jax.models import efficientnet

SOURCES = ('efficientnet-pytorch', 'torchvision', 'efficientface-ldg')
# config.model fields each source's weights were trained with.
ARCHITECTURES = {
    ('efficientnet-pytorch', 'efficientnet_b0'): dict(
        padding='same', bn_epsilon=1e-3, bn_momentum=0.99),
    ('torchvision', 'efficientnet_b0'): dict(
        padding='symmetric', bn_epsilon=1e-5, bn_momentum=0.9),
    ('torchvision', 'resnet50'): dict(bn_epsilon=1e-5, bn_momentum=0.9),
    ('efficientface-ldg', 'resnet50'): dict(bn_epsilon=1e-5, bn_momentum=0.9),
}
# What each source's model was trained on, for data.json; class names come
# with EfficientFace's LDG, from --class_names otherwise.
IMAGENET_INPUT = dict(input_shape=[224, 224, 3], augment='resized_crop',
                      mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
EFFICIENTFACE_LDG = dict(
    class_names=['neutral', 'happiness', 'sadness', 'surprise', 'fear',
                 'disgust', 'anger'],
    input_shape=[224, 224, 3], augment='resized_crop',
    mean=[0.57535914, 0.44928582, 0.40079932],
    std=[0.20735591, 0.18981615, 0.18132027])
_BN = {'scale': 'weight', 'bias': 'bias', 'mean': 'running_mean',
       'var': 'running_var'}


class ConversionError(errors.UserError):
  """A state dict that does not match the model."""


def _effnet_block_names():
  """Our block index -> (stage, index in stage) as torchvision numbers them."""
  return [(stage + 1, i)
          for stage, (*_, repeats) in enumerate(efficientnet.STAGES)
          for i in range(repeats)]


def torch_name(source, model_name, path):
  """The state-dict key of our variable at `path` (module names, leaf)."""
  *modules, leaf = path
  leaf = {'kernel': 'weight'}.get(leaf, _BN.get(leaf, leaf))
  if model_name == 'resnet50':
    if modules[0].startswith('layer'):
      stage, index = modules[0].split('_')
      inner = {'downsample_conv': 'downsample.0',
               'downsample_bn': 'downsample.1'}.get(modules[1], modules[1])
      return f'{stage}.{index}.{inner}.{leaf}'
    return f'{modules[0]}.{leaf}'
  if source == 'efficientnet-pytorch':
    names = {'stem_conv': '_conv_stem', 'stem_bn': '_bn0',
             'head_conv': '_conv_head', 'head_bn': '_bn1',
             'classifier': '_fc', 'expand_conv': '_expand_conv',
             'expand_bn': '_bn0', 'depthwise_conv': '_depthwise_conv',
             'depthwise_bn': '_bn1', 'se_reduce': '_se_reduce',
             'se_expand': '_se_expand', 'project_conv': '_project_conv',
             'project_bn': '_bn2'}
    if modules[0].startswith('block'):
      return f'_blocks.{modules[0][5:]}.{names[modules[1]]}.{leaf}'
    return f'{names[modules[0]]}.{leaf}'
  # torchvision's efficientnet_b0.
  top = {'stem_conv': 'features.0.0', 'stem_bn': 'features.0.1',
         'head_conv': 'features.8.0', 'head_bn': 'features.8.1',
         'classifier': 'classifier.1'}
  if not modules[0].startswith('block'):
    return f'{top[modules[0]]}.{leaf}'
  block = int(modules[0][5:])
  stage, index = _effnet_block_names()[block]
  expands = efficientnet.STAGES[stage - 1][0] != 1
  parts = (['expand'] if expands else []) + ['depthwise', 'se', 'project']
  part, kind = modules[1].rsplit('_', 1)  # e.g. ('depthwise', 'conv')
  position = parts.index('se' if part == 'se' else part)
  inner = ({'reduce': 'fc1', 'expand': 'fc2'}[kind] if part == 'se'
           else {'conv': '0', 'bn': '1'}[kind])
  return f'features.{stage}.{index}.block.{position}.{inner}.{leaf}'


def _to_flax(array, target_shape):
  """A PyTorch tensor in our layout: OIHW -> HWIO, (out, in) -> (in, out)."""
  if array.ndim == 4:
    array = array.transpose(2, 3, 1, 0)
  elif array.ndim == 2:
    array = array.T
  return array if array.shape == tuple(target_shape) else None


def model_for(source, model_name, num_classes):
  if (source, model_name) not in ARCHITECTURES:
    raise ConversionError(f'--from={source} --model={model_name}: supported '
                          f'pairs are {sorted(ARCHITECTURES)}')
  config = ml_collections.ConfigDict(
      dict(name=model_name, **ARCHITECTURES[source, model_name]))
  return config, models.create(config, num_classes)


def convert(state_dict, source, model_name):
  """({'params', 'batch_stats'} as numpy, config.model) from a state dict."""
  # DataParallel's `module.` prefix (EfficientFace saves it so) is dropped.
  state_dict = {k.removeprefix('module.'): np.asarray(v)
                for k, v in state_dict.items()
                if not k.endswith('num_batches_tracked')}
  head = {'efficientnet_b0': {'efficientnet-pytorch': '_fc.bias',
                              'torchvision': 'classifier.1.bias'},
          'resnet50': {'torchvision': 'fc.bias',
                       'efficientface-ldg': 'fc.bias'}}.get(model_name, {})
  head = head.get(source)
  if head is None or head not in state_dict:
    model_for(source, model_name, 1)  # raises on an unsupported pair
    raise ConversionError(f'no {head} in the file: is it a {source} '
                          f'{model_name}?')
  config, model = model_for(source, model_name, len(state_dict[head]))
  size = 224
  abstract = jax.eval_shape(lambda: model.init(
      jax.random.key(0), jnp.zeros((1, size, size, 3))))
  variables, missing, misshaped, used = {}, [], [], set()
  for path, target in jax.tree_util.tree_flatten_with_path(abstract)[0]:
    keys = tuple(p.key for p in path)
    name = torch_name(source, model_name, keys[1:])
    if name not in state_dict:
      missing.append(name)
      continue
    used.add(name)
    array = _to_flax(state_dict[name], target.shape)
    if array is None:
      misshaped.append(f'{name} {tuple(state_dict[name].shape)}')
      continue
    node = variables
    for key in keys[:-1]:
      node = node.setdefault(key, {})
    node[keys[-1]] = array.astype(np.float32)
  extra = sorted(set(state_dict) - used)
  not_finite = sorted(name for name in used
                      if not np.isfinite(state_dict[name]).all())
  problems = [f'{what}: {", ".join(names)}' for what, names in
              (('missing', missing), ('extra', extra),
               ('wrong shape', misshaped),
               ('not finite (NaN or inf)', not_finite)) if names]
  if problems:
    raise ConversionError(f'the {source} {model_name} weights cannot be used: '
                          + '; '.join(problems))
  config.num_classes = len(state_dict[head])
  return variables, config


def read_state_dict(path):
  """A {name: numpy array} state dict from .safetensors or .pth/.pt."""
  if not os.path.isfile(path):
    raise errors.MissingError(f'{path}: no such file')
  if path.endswith('.safetensors'):
    from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top
    try:
      return load_file(path)
    except Exception as e:  # pylint: disable=broad-except
      raise ConversionError(f'{path}: not a readable .safetensors file '
                            f'({_first_line(e)})') from None
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise errors.UserError(
        f'{path}: reading .pth/.pt files needs torch (pip install torch), or '
        'convert it to .safetensors') from None
  try:
    # weights_only: tensors and plain containers, never arbitrary objects.
    state = torch.load(path, map_location='cpu', weights_only=True)
  except Exception as e:  # pylint: disable=broad-except
    # torch's own message suggests weights_only=False, which would run
    # whatever code the file holds: not repeated here.
    raise ConversionError(
        f'{path}: not a PyTorch state dict of tensors '
        f'({type(e).__name__}); if it is one, save it again with '
        'torch.save(model.state_dict(), path)') from None
  # A training checkpoint: its weights beside entries such as best_acc.
  if isinstance(state, dict) and isinstance(state.get('state_dict'), dict):
    state = state['state_dict']
  if not isinstance(state, dict) or not all(
      isinstance(v, torch.Tensor) for v in state.values()):
    raise ConversionError(f'{path}: holds no state dict of tensors')
  return {k: v.float().numpy() for k, v in state.items()}


def _first_line(error):
  return (str(error).strip().splitlines() or [type(error).__name__])[0]


def data_fields(source, class_names=None, mean=None, std=None):
  """data.json's content (fer_jax.teacher.INPUT_FIELDS), or None when the
  class names are unknown."""
  if source == 'efficientface-ldg':
    fields = dict(EFFICIENTFACE_LDG)
  elif class_names:
    fields = dict(IMAGENET_INPUT, class_names=list(class_names))
  else:
    return None
  if class_names and list(class_names) != fields['class_names']:
    raise errors.UserError(
        f'--class_names={",".join(class_names)}: {source} outputs '
        f'{fields["class_names"]}')
  for key, values in (('mean', mean), ('std', std)):
    if values:
      if len(values) != 3:
        raise errors.UserError(f'--{key}={values}: expected 3 values (RGB)')
      try:
        fields[key] = [float(v) for v in values]
      except ValueError:
        raise errors.UserError(f'--{key}={",".join(values)}: expected '
                               'numbers') from None
  return fields


def save(variables, model_config, output, data=None):
  """Writes output/variables, output/model.json and, when the classes are
  known, output/data.json; all or nothing."""
  if os.path.exists(output):
    raise errors.UserError(f'{output}: exists; remove it or choose another '
                          '--output')
  tmp = output.rstrip('/') + '.tmp'
  shutil.rmtree(tmp, ignore_errors=True)
  os.makedirs(tmp)
  with ocp.StandardCheckpointer() as checkpointer:
    checkpointer.save(os.path.abspath(os.path.join(tmp, 'variables')),
                      variables)
  with open(os.path.join(tmp, 'model.json'), 'w') as f:
    json.dump(model_config.to_dict(), f, indent=1)
  if data is not None:
    with open(os.path.join(tmp, 'data.json'), 'w') as f:
      json.dump(data, f, indent=1)
  os.rename(tmp, output)


def load(path):
  """(variables as numpy, model fields) from a `convert` output directory."""
  fields_path = os.path.join(path, 'model.json')
  if not os.path.isfile(fields_path):
    raise errors.MissingError(
        f'config.model.init_from={path!r}: no model.json or checkpoints/ '
        'there; expected the output of fer_jax.convert or a run\'s workdir')
  with open(fields_path) as f:
    fields = json.load(f)
  with ocp.StandardCheckpointer() as checkpointer:
    variables = checkpointer.restore(
        os.path.abspath(os.path.join(path, 'variables')))
  return jax.tree.map(np.asarray, variables), fields


def main(argv):
  del argv
  f = flags.FLAGS
  values = {name: f[name].value for name in ('from', 'model', 'input',
                                              'output')}
  if values['from'] == 'efficientface-ldg':
    values['model'] = values['model'] or 'resnet50'
  for name, value in values.items():
    if value is None:
      sys.exit(f'error: --{name} is required')
  def run():
    data = data_fields(values['from'], f.class_names, f.mean, f.std)
    variables, config = convert(read_state_dict(values['input']),
                                values['from'], values['model'])
    if data is not None and len(data['class_names']) != config.num_classes:
      raise errors.UserError(
          f'--class_names: {len(data["class_names"])} names for '
          f'{config.num_classes} outputs')
    save(variables, config, values['output'], data)
    return variables, config
  variables, config = errors.report(run, verbose=flags.FLAGS.verbosity >= 1)
  count = sum(x.size for x in jax.tree.leaves(variables['params']))
  print(f"{values['output']}: {config.name}, {count:,} parameters, "
        f'{config.num_classes} classes')


if __name__ == '__main__':
  # Defined here, not at import: the trainer imports this module for `load`.
  flags.DEFINE_enum('from', None, SOURCES, 'Library of the weights.')
  flags.DEFINE_enum('model', None, ['efficientnet_b0', 'resnet50'], 'Model.')
  flags.DEFINE_string('input', None, '.pth, .pt or .safetensors file.')
  flags.DEFINE_string('output', None, 'Directory to create.')
  flags.DEFINE_list('class_names', None, 'The class of each output, in '
                    'order; needed for the weights to teach (config.ldl).')
  flags.DEFINE_list('mean', None, 'Input mean per channel, if not '
                    "ImageNet's.")
  flags.DEFINE_list('std', None, "Input std per channel, if not ImageNet's.")
  app.run(main)
