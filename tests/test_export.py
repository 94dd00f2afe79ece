"""`python -m fer_jax.export`: the ONNX graph gives the JAX model's
probabilities in onnxruntime, with what a user needs in its metadata; a
.msgpack export is read back as the run (`test_predict.py::
test_every_loader_takes_a_workdir_and_its_exported_file_alike`)."""
import json
import os
import subprocess
import sys

from conftest import REPO, assert_onnx_matches, one_epoch_fer2013_run
import jax
import jax.numpy as jnp
import numpy as np
import onnx
import pytest
from skimage import data

from configs import uvgg_fer2013_cpu
from fer_jax import errors
from fer_jax import export
from fer_jax import onnx_graph
from fer_jax import predict
from fer_jax import weights
from fer_jax.data import fer2013


def real_faces():
  """Face crops of real photographs, as a detector boxes them: the
  astronaut (RGB; also darker, mirrored and tighter) and the cameraman
  (grey)."""
  head = data.astronaut()[40:250, 150:320]
  return [head, np.ascontiguousarray(head[:, ::-1]),
          (head * 0.6).astype(np.uint8), head[30:180, 20:150],
          np.repeat(data.camera()[40:200, 180:320, None], 3, axis=2)]


def _metadata(path):
  return {p.key: p.value for p in onnx.load(path).metadata_props}


def test_the_shipped_model_exports_to_onnx_with_its_probabilities(tmp_path):
  path = export.export(weights.SHIPPED, str(tmp_path / 'fer2013.onnx'))
  predictor = predict.Predictor.pretrained()
  p = assert_onnx_matches(path, predictor, real_faces())
  assert np.argmax(p[0]) == fer2013.CLASS_NAMES.index('happy')
  assert_onnx_matches(path, predictor, real_faces()[:1])  # any batch
  meta = _metadata(path)
  assert json.loads(meta['class_names']) == list(fer2013.CLASS_NAMES)
  assert meta['logit_adjustment_tau'] == f'{weights.load(weights.SHIPPED).tau:g}'
  assert meta['input'].startswith('image: uint8 (batch, 48, 48, 1)')
  assert meta['crops'].startswith('ten 44x44')
  assert ".convert('L')" in meta['preprocessing']
  # One crop: the model evaluated as configs with eval_crop='centre' are.
  centre = export.export(weights.SHIPPED, str(tmp_path / 'centre.onnx'),
                         crops='centre')
  config = predictor.config.copy_and_resolve_references()
  config.data.eval_crop = 'centre'
  assert_onnx_matches(centre, predict.Predictor(
      config, predictor.class_names, predictor.image_shape,
      predictor.variables, predictor.logit_shift), real_faces())
  assert _metadata(centre)['crops'] == 'the centre 44x44 crop'


@pytest.fixture(scope='module')
def uvgg_run(tmp_path_factory):
  """One epoch of the shipped model's config at 1/16 width on a
  FER2013-layout fixture."""
  _, workdir, _ = one_epoch_fer2013_run(tmp_path_factory.mktemp('fer2013'),
                                        uvgg_fer2013_cpu.get_config())
  return workdir


def test_a_uvgg19_run_exports_from_its_workdir_and_its_msgpack(uvgg_run,
                                                              tmp_path):
  exported = export.export(uvgg_run, str(tmp_path / 'run.msgpack'))
  for source in (uvgg_run, exported):
    path = export.export(source, str(tmp_path / 'run.onnx'))
    assert_onnx_matches(path, predict.Predictor.load(uvgg_run), real_faces())
  assert json.loads(_metadata(path)['model'])['name'] == 'uvgg19'
  assert _metadata(path)['logit_adjustment_tau'] == 'none'


def test_export_mistakes_are_one_line_and_write_nothing(uvgg_run, tmp_path):
  def run(*args):
    return subprocess.run([sys.executable, '-m', 'fer_jax.export', *args],
                          cwd=REPO, capture_output=True, text=True,
                          timeout=300, check=False)
  out = str(tmp_path / 'x.onnx')
  for args, expected in (
      ([f'--workdir={tmp_path}/nothing', f'--output={out}'],
       f'{tmp_path}/nothing'),
      ([f'--workdir={uvgg_run}', '--pretrained', f'--output={out}'],
       'one of --workdir=RUN and --pretrained'),
      ([f'--workdir={uvgg_run}', f'--output={out}', '--checkpoint=banana'],
       'banana')):
    result = run(*args)
    assert result.returncode != 0
    lines = [l for l in result.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and expected in lines[0], result.stderr[-2000:]
    assert not os.listdir(tmp_path)  # no file, no temporary left


def _every_rule(x):
  """A function of (batch, 4, 6) arrays that uses each operator rule of
  `onnx_graph` the models do not (they test the rest)."""
  y = jnp.where(x > 0, x ** 2, jnp.minimum(x, -0.5))
  y = (y + jnp.sqrt(jnp.abs(x)) + jnp.log(2 + x) + jnp.log1p(jnp.abs(x))
       + jax.lax.erf(x) + jax.lax.rsqrt(1 + x * x) - jnp.exp(-x))
  y = y * (x != 0.5) + (x <= 0) + (x >= 1) + (x == 0) - (x < -1)
  products = jnp.einsum('bij,bkj->bik', y, y)  # Einsum, batched
  padded = jax.lax.slice_in_dim(jnp.flip(jnp.pad(y, ((0, 0), (1, 2), (0, 0))),
                                         1), 1, 5, axis=1)
  out = (jnp.concatenate([padded, y], axis=2).sum(axis=2)
         + products.max(axis=2) + jnp.transpose(y, (0, 2, 1)).min(axis=1)
         + jnp.argmax(y, axis=2).astype(jnp.float32)
         + jnp.squeeze(jax.lax.slice_in_dim(y, 0, 1, axis=2), 2)
         + (y @ jnp.ones((6, 2))).sum(-1))
  return jax.nn.softmax(out) + jnp.tanh(out) + jax.nn.sigmoid(out) - out


def test_each_operator_rule_gives_jax_values():
  import onnxruntime  # pylint: disable=g-import-not-at-top
  model = onnx_graph.to_onnx(_every_rule, jnp.zeros((1, 4, 6)), 'x', 'y')
  session = onnxruntime.InferenceSession(model.SerializeToString())
  x = np.random.default_rng(0).uniform(-1.5, 1.5, (3, 4, 6)).astype(
      np.float32)
  x[0, 0, :3] = (0, 0.5, 1)  # the comparisons' edges
  np.testing.assert_allclose(session.run(None, {'x': x})[0],
                             jax.jit(_every_rule)(x), rtol=1e-5, atol=1e-5)


def test_a_primitive_without_an_onnx_rule_is_refused_by_name():
  with pytest.raises(errors.UserError, match="primitive 'sort'"):
    onnx_graph.to_onnx(lambda x: jnp.sort(x, axis=-1),
                       jnp.zeros((1, 5)), 'x', 'y')
