"""Weight import: our models equal the reference libraries' on their weights."""
import functools
import os
import subprocess
import sys
import types

import jax
import numpy as np
import pytest

import efficientnet_pytorch
import torch

from conftest import REPO
from conftest import init_variables
from fer_jax import convert


def _torchvision():
  """torchvision's model definitions, the reference for its state dicts.

  PyPI's torchvision is a CUDA build whose compiled operators (`_C.so`,
  linked to libc10_cuda) do not load beside the CPU build of torch pinned
  in requirements-test.txt; only the fake-tensor registrations of those
  operators fail at import, and the models use none of them. So that module
  is stood in for by an empty one, and the models are torchvision's own.
  """
  sys.modules.setdefault('torchvision._meta_registrations',
                         types.ModuleType('torchvision._meta_registrations'))
  import torchvision  # pylint: disable=g-import-not-at-top
  return torchvision


def _randomise_batchnorm(module):
  """Non-trivial BatchNorm statistics, so that their mapping is tested."""
  generator = torch.Generator().manual_seed(0)
  for m in module.modules():
    if isinstance(m, torch.nn.BatchNorm2d):
      with torch.no_grad():
        m.running_mean.copy_(torch.randn(m.num_features,
                                         generator=generator) * 0.1)
        m.running_var.copy_(torch.rand(m.num_features,
                                       generator=generator) + 0.5)
        m.weight.copy_(torch.rand(m.num_features, generator=generator) + 0.5)
        m.bias.copy_(torch.randn(m.num_features, generator=generator) * 0.1)
  return module.eval()


def _check_parity(reference, source, model_name, size=224):
  torch.manual_seed(0)
  reference = _randomise_batchnorm(reference)
  x = np.random.default_rng(0).normal(size=(2, size, size, 3)).astype(
      np.float32)
  with torch.no_grad():
    expected = reference(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy()
  variables, config = convert.convert(reference.state_dict(), source,
                                      model_name)
  _, model = convert.model_for(source, model_name, config.num_classes)
  ours = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, x)
  error = np.max(np.abs(np.asarray(ours) - expected)) / np.max(
      np.abs(expected))
  assert error < 1e-4, error
  return variables, config


def _effnet_pytorch(num_classes=7):
  return efficientnet_pytorch.EfficientNet.from_name(
      'efficientnet-b0', num_classes=num_classes)


def test_efficientnet_b0_equals_efficientnet_pytorch():
  _check_parity(_effnet_pytorch(), 'efficientnet-pytorch', 'efficientnet_b0')


@pytest.mark.parametrize('model_name', ['efficientnet_b0', 'resnet50'])
def test_torchvision_parity(model_name):
  reference = getattr(_torchvision().models, model_name)(num_classes=7)
  _check_parity(reference, 'torchvision', model_name)


def test_renamed_missing_or_misshaped_tensors_are_listed():
  state = {k: v.numpy() for k, v in _effnet_pytorch().state_dict().items()}
  state['_blocks.3._bn1.scale'] = state.pop('_blocks.3._bn1.weight')
  del state['_conv_head.weight']
  state['_fc.weight'] = state['_fc.weight'][:, :100]
  with pytest.raises(convert.ConversionError) as error:
    convert.convert(state, 'efficientnet-pytorch', 'efficientnet_b0')
  message = str(error.value)
  assert 'missing: _blocks.3._bn1.weight, _conv_head.weight' in message
  assert 'extra: _blocks.3._bn1.scale' in message
  assert 'wrong shape: _fc.weight (7, 100)' in message


def test_cli_writes_a_checkpoint_from_safetensors(tmp_path):
  from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top
  state = {k: v.numpy() for k, v in _effnet_pytorch().state_dict().items()}
  weights = str(tmp_path / 'b0.safetensors')
  save_file(state, weights)
  output = str(tmp_path / 'b0')
  args = [sys.executable, '-m', 'fer_jax.convert',
          '--from=efficientnet-pytorch', '--model=efficientnet_b0',
          f'--input={weights}', f'--output={output}']
  result = subprocess.run(args, cwd=REPO, capture_output=True, text=True,
                          check=False)
  assert result.returncode == 0, result.stderr
  assert '4,016,515 parameters, 7 classes' in result.stdout
  variables, fields = convert.load(output)
  assert fields == dict(name='efficientnet_b0', padding='same',
                        bn_epsilon=1e-3, bn_momentum=0.99, num_classes=7)
  np.testing.assert_array_equal(
      variables['params']['stem_conv']['kernel'],
      state['_conv_stem.weight'].transpose(2, 3, 1, 0))
  again = subprocess.run(args, cwd=REPO, capture_output=True, text=True,
                         check=False)
  assert again.returncode != 0
  assert again.stderr.strip().splitlines()[-1] == (
      f'error: {output}: exists; remove it or choose another --output')


def test_unreadable_files_and_nan_weights_are_named(tmp_path):
  pickled = tmp_path / 'random.pth'
  # A pickle of an arbitrary object: weights_only refuses to build it.
  torch.save({'model': torch.nn.Linear(2, 2)}, pickled)
  with pytest.raises(convert.ConversionError,
                     match=rf'{pickled}: not a PyTorch state dict') as error:
    convert.read_state_dict(str(pickled))
  assert 'weights_only=False' not in str(error.value)
  from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top
  state = {k: v.numpy() for k, v in _effnet_pytorch().state_dict().items()}
  truncated = tmp_path / 'cut.safetensors'
  save_file(state, str(truncated))
  with open(truncated, 'r+b') as f:
    f.truncate(os.path.getsize(truncated) // 2)
  with pytest.raises(convert.ConversionError,
                     match=rf'{truncated}: not a readable \.safetensors'):
    convert.read_state_dict(str(truncated))
  state['_blocks.2._bn1.running_var'][3] = np.nan
  with pytest.raises(convert.ConversionError,
                     match=r'not finite \(NaN or inf\): '
                     r'_blocks\.2\._bn1\.running_var'):
    convert.convert(state, 'efficientnet-pytorch', 'efficientnet_b0')


def _efficientface_ldg_file(path, variables):
  """A file in EfficientFace's LDG format (Pretrained_LDG.tar): torch.save of
  {'state_dict': torchvision ResNet-50 names prefixed 'module.', ...}."""
  state = {}
  for keys, leaf in jax.tree_util.tree_flatten_with_path(variables)[0]:
    keys = tuple(k.key for k in keys)
    leaf = np.asarray(leaf)
    leaf = leaf.transpose(3, 2, 0, 1) if leaf.ndim == 4 else leaf.T
    name = convert.torch_name('torchvision', 'resnet50', keys[1:])
    state['module.' + name] = torch.from_numpy(np.array(leaf))
    if name.endswith('running_mean'):
      state['module.' + name.replace('running_mean', 'num_batches_tracked')] = (
          torch.tensor(100))
  torch.save({'epoch': 40, 'state_dict': state,
              'best_acc': torch.tensor(86.1)}, path)


def test_efficientface_ldg_converts_and_teaches_in_the_datasets_order(
    tmp_path):
  import ml_collections  # pylint: disable=g-import-not-at-top
  from fer_jax import teacher as teacher_lib  # pylint: disable=g-import-not-at-top
  from fer_jax.data import rafdb  # pylint: disable=g-import-not-at-top
  _, model = convert.model_for('efficientface-ldg', 'resnet50', 7)
  variables = init_variables(model, (224, 224, 3))
  weights = str(tmp_path / 'Pretrained_LDG.tar')
  _efficientface_ldg_file(weights, variables)
  converted, config = convert.convert(convert.read_state_dict(weights),
                                      'efficientface-ldg', 'resnet50')
  output = str(tmp_path / 'ldg')
  convert.save(converted, config, output,
               convert.data_fields('efficientface-ldg'))

  data = ml_collections.ConfigDict(dict(
      augment='resized_crop', mean=(0.485, 0.456, 0.406),
      std=(0.229, 0.224, 0.225)))  # a student normalised as ImageNet
  logs = []
  teacher = teacher_lib.load(output, rafdb.CLASS_NAMES, (224, 224, 3), data,
                             log=logs.append)
  assert any('reordered by name' in line for line in logs)
  raw = np.random.default_rng(0).random((1, 224, 224, 3), np.float32)
  got = teacher.apply(teacher.variables,
                      (raw - np.float32(data.mean)) / np.float32(data.std))
  ours = jax.jit(functools.partial(model.apply, train=False))(
      variables, (raw - np.float32(convert.EFFICIENTFACE_LDG['mean']))
      / np.float32(convert.EFFICIENTFACE_LDG['std']))
  theirs = convert.EFFICIENTFACE_LDG['class_names']
  expected = ours[:, [theirs.index(name) for name in rafdb.CLASS_NAMES]]
  np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)

  plain = str(tmp_path / 'plain')
  convert.save(converted, config, plain)
  with pytest.raises(convert.errors.UserError, match='without class names'):
    teacher_lib.load(plain, rafdb.CLASS_NAMES, (224, 224, 3), data)
