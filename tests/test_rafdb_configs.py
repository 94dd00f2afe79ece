"""The RAF-DB configs train end to end on a generated RAF-DB, from scratch
and from converted weights."""
import importlib

from conftest import assert_onnx_matches
import numpy as np
import pytest
from skimage import data

from fer_jax import experiment
from fer_jax import export
from fer_jax import predict
from fer_jax import train


def _small(name, data_dir):
  """The config at 64x64 on the 12-image fixture: one epoch of 3 steps."""
  config = importlib.import_module(f'configs.{name}').get_config()
  config.data.update(data_dir=data_dir, crop=64, threads=1)
  config.batch_size, config.eval_batch_size = 4, 8
  config.epochs, config.log_every = 1, 1
  return config


@pytest.mark.parametrize('name', ['effnet_b0_rafdb', 'resnet50_rafdb'])
def test_rafdb_config_trains_end_to_end_and_exports(rafdb_dir, tmp_path,
                                                    name):
  workdir = str(tmp_path / 'run')
  _, history = train.train_and_evaluate(_small(name, rafdb_dir), workdir)
  assert np.sum(history[-1]['eval']['test']['confusion']) == 7
  # The ONNX graph (resize before the graph, normalisation in it) gives
  # the run's probabilities on real photographs.
  path = export.export(workdir, str(tmp_path / 'run.onnx'))
  assert_onnx_matches(path, predict.Predictor.load(workdir),
                      [data.astronaut()[40:250, 150:320],
                       data.coffee()[50:350, 100:400]])


def test_init_from_keeps_the_backbone_and_reinitialises_a_different_head(
    rafdb_dir, tmp_path):
  import efficientnet_pytorch  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  from fer_jax import convert  # pylint: disable=g-import-not-at-top
  torch.manual_seed(0)
  reference = efficientnet_pytorch.EfficientNet.from_name(
      'efficientnet-b0', num_classes=10)
  variables, model_config = convert.convert(
      reference.state_dict(), 'efficientnet-pytorch', 'efficientnet_b0')
  convert.save(variables, model_config, str(tmp_path / 'weights'))
  config = _small('effnet_b0_rafdb', rafdb_dir)
  config.model.init_from = str(tmp_path / 'weights')
  ex = experiment.Experiment(config)

  def start(ex):
    return train.start_from(ex.initial_state(), ex.model,
                            config.model.init_from, ex.replicated)

  state = start(ex)
  np.testing.assert_array_equal(state.params['block3']['depthwise_conv'][
      'kernel'], variables['params']['block3']['depthwise_conv']['kernel'])
  np.testing.assert_array_equal(state.batch_stats['head_bn']['var'],
                                variables['batch_stats']['head_bn']['var'])
  assert state.params['classifier']['kernel'].shape == (1280, 7)  # fresh
  config.model.padding = 'symmetric'
  with pytest.raises(ValueError, match="config.model.padding='symmetric', "
                     "but the weights in .* need 'same'"):
    start(experiment.Experiment(config))
  # Training starts from the weights, and a resumed run does not reload them.
  config.model.padding = 'same'
  state, history = train.train_and_evaluate(config, str(tmp_path / 'run'))
  assert len(history) == 1
  moved = state.params['block3']['depthwise_conv']['kernel']
  assert not np.array_equal(moved, variables['params']['block3'][
      'depthwise_conv']['kernel'])
  resumed, _ = train.train_and_evaluate(config, str(tmp_path / 'run'))
  np.testing.assert_array_equal(
      resumed.params['block3']['depthwise_conv']['kernel'], moved)
