"""Label distribution learning: the loss, the distances, the teacher."""
import dataclasses
import functools
import json
import os

import flax.serialization
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from conftest import init_variables
from conftest import tiny_config
from fer_jax import errors
from fer_jax import evaluation
from fer_jax import ldl
from fer_jax import models
from fer_jax import optim
from fer_jax import steps
from fer_jax import teacher as teacher_lib
from fer_jax import train
from fer_jax.data import fer_synth

NAMES = list(fer_synth.CLASS_NAMES)
SHAPE = (44, 44, 1)


def _random(rng, *shape):
  return jnp.asarray(rng.normal(size=shape), jnp.float32)


@pytest.mark.parametrize('reduction', ldl.REDUCTIONS)
def test_loss_gradient_is_soft_cross_entropy_and_kl(reduction):
  rng = np.random.default_rng(0)
  logits, teacher_logits = _random(rng, 16, 7), _random(rng, 16, 7)
  labels = jnp.asarray(rng.integers(0, 7, 16))
  target = ldl.targets(teacher_logits, labels, temperature=2.0,
                       onehot_weight=0.3)
  np.testing.assert_allclose(target.sum(-1), 1, rtol=1e-6)
  per = 1 / 7 if reduction == 'class_mean' else 1.0

  def ours(x):
    return ldl.per_image_loss(x, target, reduction).mean()

  def cross_entropy(x):  # EfficientFace: mean(-t * log softmax(x)) * K
    return per * jnp.mean(jnp.sum(-target * jnp.log(jax.nn.softmax(x)), -1))

  def kl(x):
    q = jax.nn.softmax(x)
    return per * jnp.mean(jnp.sum(target * jnp.log(target / q), -1))

  np.testing.assert_allclose(ours(logits), cross_entropy(logits), rtol=1e-6)
  for reference in (cross_entropy, kl):
    np.testing.assert_allclose(jax.grad(ours)(logits),
                               jax.grad(reference)(logits), atol=1e-7)
  if reduction == 'class_mean':
    np.testing.assert_allclose(
        ours(logits),
        jnp.mean(-target * jnp.log(jax.nn.softmax(logits))), rtol=1e-6)


def test_lambda_one_sample_mean_is_the_one_hot_cross_entropy():
  rng = np.random.default_rng(1)
  logits, teacher_logits = _random(rng, 16, 7), _random(rng, 16, 7)
  labels = jnp.asarray(rng.integers(0, 7, 16))
  target = ldl.targets(teacher_logits, labels, onehot_weight=1.0)
  ours = lambda x: ldl.per_image_loss(x, target, 'sample_mean').mean()
  onehot = lambda x: optax.softmax_cross_entropy_with_integer_labels(
      x, labels).mean()
  np.testing.assert_allclose(ours(logits), onehot(logits), atol=1e-6)
  np.testing.assert_allclose(jax.grad(ours)(logits), jax.grad(onehot)(logits),
                             atol=1e-6)


def test_each_distance_matches_its_formula():
  rng = np.random.default_rng(2)
  p = rng.dirichlet(np.ones(7), size=32)
  q = rng.dirichlet(np.ones(7), size=32)
  p[0] = np.eye(7)[3]  # zeros in the target: 0/0 and 0 log 0 terms
  got = jax.device_get(ldl.distances(jnp.asarray(p, jnp.float32),
                                     jnp.asarray(q, jnp.float32)))
  expected = {
      'chebyshev': np.abs(p - q).max(1),
      'clark': np.sqrt(((p - q) ** 2 / (p + q) ** 2).sum(1)),
      'canberra': (np.abs(p - q) / (p + q)).sum(1),
      'kl': np.where(p > 0, p * np.log(np.where(p > 0, p, 1) / q), 0).sum(1),
      'cosine': (p * q).sum(1) / np.linalg.norm(p, axis=1)
                / np.linalg.norm(q, axis=1),
      'intersection': np.minimum(p, q).sum(1),
  }
  assert set(got) == set(ldl.DISTANCES)
  for name in ldl.DISTANCES:
    np.testing.assert_allclose(got[name], expected[name], rtol=2e-5,
                               atol=2e-6, err_msg=name)
  same = jax.device_get(ldl.distances(jnp.asarray(p), jnp.asarray(p)))
  np.testing.assert_allclose([same[n][0] for n in ldl.DISTANCES],
                             [0, 0, 0, 0, 1, 1], atol=1e-6)


def _teacher_variables(seed):
  """vgg19 at 1/16 width with random weights and BatchNorm statistics far
  from a batch's own, so that train-mode BatchNorm would show."""
  model = models.create(
      ml_collections.ConfigDict({'name': 'vgg19', 'width': 1 / 16}), 7)
  variables = init_variables(model, SHAPE, seed)
  rng = np.random.default_rng(seed)
  stats = jax.tree.map(
      lambda x: jnp.asarray(rng.uniform(0.5, 2.0, x.shape), x.dtype),
      variables['batch_stats'])
  return model, {'params': variables['params'], 'batch_stats': stats}


def _export(path, variables, class_names=NAMES, mean=None, std=None):
  """A teacher file in fer_jax.pretrained's format."""
  config = tiny_config(None)
  config.model = ml_collections.ConfigDict({'name': 'vgg19', 'width': 1 / 16})
  config.data.mean, config.data.std = mean, std
  record = {'config': json.dumps(config.to_dict()),
            'class_names': list(class_names), 'image_shape': [48, 48, 1],
            'variables': jax.tree.map(np.asarray, variables)}
  with open(path, 'wb') as f:
    f.write(flax.serialization.msgpack_serialize(record))
  return str(path)


def _load(path, data_config=None, shape=SHAPE, names=NAMES):
  return teacher_lib.load(path, names, shape,
                          data_config or tiny_config(None).data,
                          log=lambda _: None)


def test_teacher_in_the_train_step_runs_in_inference_mode(tmp_path):
  teacher_model, variables = _teacher_variables(0)
  teacher = _load(_export(tmp_path / 't.msgpack', variables))
  config = tiny_config(None)
  model = models.create(config.model, 7)
  lr_fn = optim.learning_rate_fn(config, 10)
  tx = optim.create_optimizer(config, lr_fn)
  mesh = jax.sharding.Mesh(jax.devices(), ('data',))
  state = steps.create_train_state(
      model, tx, SHAPE, jax.random.key(0),
      jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))
  rng = np.random.default_rng(3)
  batch = {'image': jnp.asarray(rng.random((8, *SHAPE)), jnp.float32),
           'label': jnp.asarray(rng.integers(0, 7, 8), jnp.int32)}
  config.ldl.update(temperature=2.0, onehot_weight=0.25)
  step = jax.jit(functools.partial(steps.train_step, model=model, tx=tx,
                                   lr_fn=lr_fn, teacher=teacher,
                                   ldl_config=config.ldl))
  _, metrics = step(state, batch, jax.random.key(1), teacher.variables)

  expected_teacher = jax.jit(functools.partial(teacher_model.apply,
                                               train=False))(
      variables, batch['image'])
  logits, _ = jax.jit(functools.partial(
      model.apply, train=True, mutable=['batch_stats']))(
          {'params': state.params, 'batch_stats': state.batch_stats},
          batch['image'],
          rngs={'dropout': jax.random.fold_in(jax.random.key(1), 0)})
  target = (0.75 * jax.nn.softmax(expected_teacher / 2)
            + 0.25 * jax.nn.one_hot(batch['label'], 7))
  np.testing.assert_allclose(
      metrics['loss'], jnp.mean(-target * jax.nn.log_softmax(logits)),
      rtol=1e-5)
  soft = jax.nn.softmax(expected_teacher / 2)
  np.testing.assert_allclose(
      metrics['kl_to_teacher'],
      jnp.mean(jnp.sum(soft * jnp.log(soft / jax.nn.softmax(logits)), -1)),
      rtol=1e-4)
  train_mode, _ = jax.jit(functools.partial(
      teacher_model.apply, train=True, mutable=['batch_stats']))(
          variables, batch['image'], rngs={'dropout': jax.random.key(2)})
  assert not np.allclose(train_mode, expected_teacher, atol=1e-3)


def test_teacher_of_permuted_classes_gives_the_same_targets(tmp_path):
  _, variables = _teacher_variables(1)
  order = np.array([3, 0, 6, 1, 5, 2, 4])  # its output j: our order[j]
  permuted = jax.tree.map(lambda x: x, variables)
  dense = dict(permuted['params']['Dense_0'])
  dense['kernel'] = dense['kernel'][:, order]
  dense['bias'] = dense['bias'][order]
  permuted['params'] = {**permuted['params'], 'Dense_0': dense}
  original = _load(_export(tmp_path / 'a.msgpack', variables))
  reordered = _load(_export(tmp_path / 'b.msgpack', permuted,
                            [NAMES[j] for j in order]))
  images = jnp.asarray(np.random.default_rng(4).random((4, *SHAPE)),
                       jnp.float32)
  a = original.apply(original.variables, images)
  b = reordered.apply(reordered.variables, images)
  np.testing.assert_allclose(ldl.targets(b, None), ldl.targets(a, None),
                             rtol=1e-5, atol=1e-7)
  unordered = dataclasses.replace(reordered, order=np.arange(7))
  assert not np.allclose(unordered.apply(reordered.variables, images), a)


def test_teacher_of_another_normalisation_is_fed_its_own(tmp_path):
  model, variables = _teacher_variables(2)
  path = _export(tmp_path / 't.msgpack', variables, mean=(0.5,), std=(0.25,))
  data_config = tiny_config(None).data
  data_config.mean, data_config.std = (0.2,), (0.4,)
  teacher = _load(path, data_config)
  raw = np.random.default_rng(5).random((4, *SHAPE)).astype(np.float32)
  student_input = (raw - 0.2) / 0.4
  np.testing.assert_allclose(
      teacher.apply(teacher.variables, jnp.asarray(student_input)),
      model.apply(variables, jnp.asarray((raw - 0.5) / 0.25), train=False),
      rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('change, message', [
    (dict(names=NAMES[:6] + ['contempt']), 'are not the dataset'),
    (dict(names=NAMES[:6]), 'are not the dataset'),
    (dict(shape=(40, 40, 1)), 'takes (44, 44, 1) inputs'),
    (dict(shape=(44, 44, 3)), 'takes (44, 44, 1) inputs'),
])
def test_teacher_of_another_class_set_or_input_is_refused(tmp_path, change,
                                                          message):
  _, variables = _teacher_variables(0)
  path = _export(tmp_path / 't.msgpack', variables)
  with pytest.raises(errors.UserError, match=message.replace('(', r'\(')
                     .replace(')', r'\)')):
    _load(path, **change)


@pytest.mark.parametrize('key, value, expected', [
    ('ldl.onehot_weight', 1.5, r'in \[0, 1\]'),
    ('ldl.temperature', 2.0, r"ldl.temperature=2.0: expected 1 \(EfficientFace's"),
    ('ldl.reduction', 'sum', 'one of'),
    ('ldl.teacher', '/nonexistent/teacher', 'not a fer_jax workdir'),
])
def test_bad_ldl_settings_are_refused_before_writing(data_dir, tmp_path, key,
                                                     value, expected):
  config = tiny_config(data_dir, epochs=1)
  config.ldl[key.split('.')[1]] = value
  workdir = tmp_path / 'student'
  with pytest.raises(errors.UserError, match=expected):
    train.train_and_evaluate(config, str(workdir))
  assert not workdir.exists()


def test_ldl_run_reports_distances_and_refuses_another_teacher(data_dir,
                                                               tmp_path):
  path = _export(tmp_path / 't.msgpack', _teacher_variables(0)[1])
  config = tiny_config(data_dir, epochs=1, eval_batch_size=128)
  config.ldl.teacher = path
  workdir = str(tmp_path / 'student')
  _, history = train.train_and_evaluate(config, workdir)
  for split in ('validation', 'test'):
    result = history[-1]['eval'][split]
    assert 0 <= result['intersection'] <= 1 and result['kl'] > 0
    assert set(ldl.DISTANCES) <= set(result)
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    records = [json.loads(line) for line in f]
  assert all(r['train/kl_to_teacher'] > 0 for r in records
             if 'train/loss' in r)
  assert any('validation/canberra' in r for r in records)
  with open(os.path.join(workdir, 'eval', 'test.json')) as f:
    assert set(json.load(f)['teacher_distances']) == set(ldl.DISTANCES)

  # The same teacher at another path (a moved checkout): resumed and
  # evaluated with its distances; an unreadable one: evaluated without.
  moved = str(tmp_path / 'moved' / 't.msgpack')
  os.makedirs(os.path.dirname(moved))
  os.rename(path, moved)
  config.ldl.teacher = moved
  config.epochs = 2
  _, history = train.train_and_evaluate(config, workdir)
  assert [h['epoch'] for h in history] == [1, 2]
  assert 'kl' in evaluation.evaluate(config, workdir)['test']
  config.ldl.teacher = path  # gone
  results = evaluation.evaluate(config, workdir)
  assert 'kl' not in results['test'] and results['test']['accuracy'] >= 0
  with pytest.raises(errors.MissingError):
    train.train_and_evaluate(config, workdir)

  _export(path, _teacher_variables(1)[1])  # another teacher
  config.epochs = 3
  with pytest.raises(errors.UserError,
                     match='is not the teacher the run was trained with'):
    train.train_and_evaluate(config, workdir)
  results = evaluation.evaluate(config, workdir)
  assert 'kl' not in results['test']
