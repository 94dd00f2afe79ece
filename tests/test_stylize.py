"""Stylised copies: counts, provenance, determinism, refusals, mixing."""
import glob
import os

import ml_collections
import numpy as np
from PIL import Image
import pytest

import fixtures
from configs import common
from fer_jax import errors
from fer_jax.data import pipeline
from fer_jax.data import prepare
from fer_jax.data import rafdb
from fer_jax.data import stylize
from fer_jax.data import stylized_dataset


def _records(name, data_dir):
  source = stylized_dataset.load(name, ml_collections.ConfigDict(dict(
      name='rafdb', data_dir=data_dir, train_split='train', holdout=0))
                        ).as_data_source(split='train')
  return [source[i] for i in range(len(source))]


def _data_config(data_dir, **fields):
  """The common config's data fields for the generated RAF-DB."""
  config = common.get_config().data
  config.update(dict(dict(name='rafdb', data_dir=data_dir), **fields))
  return config


def test_rafdb_copies_have_the_counts_and_come_from_training_images(
    rafdb_dir, tmp_path):
  # The fixture trains on surprise 2, fear 1, ..., neutral 2 images.
  added = stylize.create('rafdb', 'mix', add='fear:2,neutral:3',
                         styles='2,10', data_dir=rafdb_dir)
  assert added == {'fear': 2, 'neutral': 3}
  records = _records('mix', rafdb_dir)
  names = list(rafdb.CLASS_NAMES)
  labels = [names[int(r['label'])] for r in records]
  assert sorted(labels) == ['fear'] * 2 + ['neutral'] * 3
  builder = pipeline.get_builder('rafdb', rafdb_dir)
  train = builder.as_data_source(split='train')
  pairs = set()
  for r in records:
    assert int(r['source_split']) == list(builder.info.splits).index('train')
    source = train[int(r['source_index'])]
    assert int(source['label']) == int(r['label'])
    assert r['image'].shape == source['image'].shape == rafdb.SHAPE
    assert np.mean(np.abs(r['image'].astype(int) - source['image'])) > 5
    pairs.add((int(r['source_index']), int(r['style'])))
  assert len(pairs) == len(records)  # each image once per style

  sheet = tmp_path / 'sheet.png'
  stylize.contact_sheet('rafdb', 'mix', str(sheet), rafdb_dir, scale=1)
  # Columns: the source, then styles 2 and 10; rows: fear's one image,
  # neutral's two.
  assert Image.open(sheet).size == (3 * 100, 16 + 3 * 100)

  stylize.create('rafdb', 'again', add='fear:2,neutral:3', styles='2,10',
                 data_dir=rafdb_dir)
  again = {(int(r['source_index']), int(r['style'])): r['image']
           for r in _records('again', rafdb_dir)}
  for r in records:
    np.testing.assert_array_equal(
        again[int(r['source_index']), int(r['style'])], r['image'])

  note = pipeline.load(_data_config(rafdb_dir, extra_train=('mix',),
                                    augment='crop', crop=96, crop_scale=(
                                        0.08, 1.0), flip=True,
                                    cutout_holes=0, eval_splits=('test',),
                                    eval_crop='centre', mean=None, std=None,
                                    class_weights='inverse_frequency',
                                    threads=1, workers=0), 4, 4, 0)
  assert note.train_size == 12 + 5
  assert 'fear 3 (+2)' in note.train_note and 'neutral 5 (+3)' in (
      note.train_note)
  # Inverse-frequency weights count the copies: fear 3 of 17 images.
  np.testing.assert_allclose(note.class_weights[1], 17 / (7 * 3), rtol=1e-6)


def test_holdout_images_are_never_copied_and_other_runs_refuse(rafdb_dir):
  holdout = 4  # the first 4 stored training images
  config = _data_config(rafdb_dir, holdout=holdout)
  builder = pipeline.get_builder('rafdb', rafdb_dir)
  _, kept = builder.split_indices('train', config)
  train = builder.as_data_source(split='train')
  left = sum(int(train[int(i)]['label']) == 0 for i in kept)  # surprise
  stylize.create('rafdb', 'held', fill_to=f'surprise:{left + 2}',
                 styles='2,14', data_dir=rafdb_dir, holdout=holdout)
  source = stylized_dataset.load('held', config).as_data_source('train')
  assert len(source) == 2
  assert all(int(source[i]['source_index']) >= holdout for i in range(2))
  with pytest.raises(errors.UserError,
                     match=r"'held': made for config.data.holdout=4, this "
                     'run has 0'):
    stylized_dataset.load('held', _data_config(rafdb_dir))
  with pytest.raises(errors.UserError,
                     match=f'more than its {left} training images'):
    stylize.create('rafdb', 'none', add=f'surprise:{left + 1}', styles='2',
                   data_dir=rafdb_dir, holdout=holdout)


def test_ckplus_copies_come_from_the_folds_training_images(tmp_path):
  root = fixtures.write_ckplus(str(tmp_path / 'raw'), {
      name: 6 for name in ('anger', 'contempt', 'disgust', 'fear', 'happy',
                           'sadness', 'surprise')})
  data_dir = str(tmp_path / 'tfds')
  builder = prepare.prepare('ckplus', root, data_dir)
  config = ml_collections.ConfigDict(dict(
      name='ckplus', data_dir=data_dir, train_split='train', holdout=0,
      fold=3, protocol='subject'))
  _, test = builder.split_indices('test', config)
  stylize.create('ckplus', 'fold3', add='contempt:4', styles='2,10',
                 data_dir=data_dir, fold=3, protocol='subject')
  source = stylized_dataset.load('fold3', config).as_data_source('train')
  copied = {int(source[i]['source_index']) for i in range(len(source))}
  assert len(copied) >= 2 and not copied & set(test.tolist())
  assert source[0]['image'].shape == (48, 48, 1)
  config.fold = 4
  with pytest.raises(errors.UserError, match='made for config.data.fold=3'):
    stylized_dataset.load('fold3', config)


@pytest.mark.parametrize('kwargs, message', [
    (dict(add='contempt:1'), "no class 'contempt'"),
    (dict(add='fear:3', styles='2,10'), 'more than its 1 training images'),
    (dict(add='fear:1', styles='26'), "'26' is not a built-in style"),
    (dict(add='fear:1', style_images='/nonexistent.jpg'),
     '/nonexistent.jpg: not a readable image'),
    (dict(add='fear:x'), "'fear:x' is not CLASS:N"),
    (dict(add='fear:1', name='../../escaped'),
     "name '../../escaped': expected letters, digits"),
    (dict(add='fear:1', name='{tmp_path}/escaped'), 'not a path'),
])
def test_bad_requests_are_refused_before_writing(rafdb_dir, tmp_path, kwargs,
                                                 message):
  kwargs = dict(dict(name='bad'), **kwargs)
  kwargs['name'] = kwargs['name'].format(tmp_path=tmp_path)
  before = sorted(glob.glob(os.path.join(rafdb_dir, '**'), recursive=True))
  with pytest.raises(errors.UserError, match=message):
    stylize.create('rafdb', data_dir=rafdb_dir, **kwargs)
  assert sorted(glob.glob(os.path.join(rafdb_dir, '**'),
                          recursive=True)) == before
  assert not os.path.exists(os.path.join(rafdb_dir, '..', 'escaped'))
  assert not os.path.exists(tmp_path / 'escaped')


def test_a_killed_stylisation_leaves_nothing_behind_for_the_next(rafdb_dir):
  target = stylized_dataset.path('killed', rafdb_dir)
  stale = os.path.join(os.path.dirname(target),
                       f'incomplete.1a2b3c_{os.path.basename(target)}')
  os.makedirs(stale)
  with open(os.path.join(stale, 'half-written.array_record'), 'w') as f:
    f.write('as a kill leaves it')
  stylize.create('rafdb', 'killed', add='fear:1', styles='2',
                 data_dir=rafdb_dir)
  assert os.listdir(os.path.dirname(target)) == [os.path.basename(target)]


def test_extra_train_of_another_dataset_is_refused(rafdb_dir, data_dir):
  stylize.create('rafdb', 'raf_only', add='fear:1', styles='2',
                 data_dir=rafdb_dir)
  with pytest.raises(errors.UserError, match="stylised from 'rafdb', not"):
    stylized_dataset.load('raf_only', _data_config(rafdb_dir, name='fer2013'))
  with pytest.raises(errors.MissingError, match='no prepared dataset'):
    stylized_dataset.load('missing', _data_config(rafdb_dir))


def test_the_studys_rafdb_additions_need_three_styles():
  # RAF-DB's training counts (surprise, fear, disgust, happiness, sadness,
  # anger, neutral) and the additions of configs/effnet_b0_rafdb_ldl_style.py.
  counts = (1290, 281, 717, 4772, 1982, 705, 2524)
  labels = np.repeat(np.arange(7), counts)
  additions = {'neutral': 300, 'disgust': 562, 'fear': 600, 'surprise': 600}
  names = list(rafdb.CLASS_NAMES)
  copies = stylize.plan(labels, names, additions, 3, seed=0)
  added = np.bincount([labels[p] for p, _ in copies], minlength=7)
  assert dict(zip(names, added)) == dict(
      surprise=600, fear=600, disgust=562, happiness=0, sadness=0, anger=0,
      neutral=300)
  assert len(set(copies)) == len(copies)  # each image once per style
  assert copies == stylize.plan(labels, names, additions, 3, seed=0)
  assert copies != stylize.plan(labels, names, additions, 3, seed=1)
  with pytest.raises(errors.UserError, match='fear:600: more than its 281'):
    stylize.plan(labels, names, additions, 2, seed=0)
