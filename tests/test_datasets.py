"""FER2013, CK+ and RAF-DB builders on generated copies of the real layouts."""
import glob
import os
import subprocess
import sys

import numpy as np
import pytest

import fixtures
from conftest import REPO
from conftest import within
from fer_jax import errors
from fer_jax.data import ckplus
from fer_jax.data import images
from fer_jax.data import pipeline
from fer_jax.data import prepare


def _labels_and_levels(builder, split):
  source = builder.as_data_source(split=split)
  records = [source[i] for i in range(len(source))]
  return [(int(r['label']), float(r['image'].mean())) for r in records]


def _check_levels(builder, split):
  """Every image's brightness is its label's (JPEG within a few levels)."""
  for label, mean in _labels_and_levels(builder, split):
    assert abs(mean - fixtures.level(label)) < 4, (label, mean)


@pytest.mark.parametrize('write', [fixtures.write_fer2013_folders,
                                   fixtures.write_fer2013_csv])
def test_fer2013_both_layouts(tmp_path, write):
  builder = prepare.prepare('fer2013', write(str(tmp_path / 'raw')),
                            str(tmp_path / 'tfds'))
  counts = np.array(fixtures.FER2013_COUNTS)
  for column, split in enumerate(('train', 'validation', 'test')):
    assert builder.info.splits[split].num_examples == counts[:, column].sum()
    assert builder.info.metadata['class_counts'][split] == list(
        counts[:, column])
    _check_levels(builder, split)
  lines = prepare.summary(builder)
  assert '  train: 17 images' in lines and '    disgust    1' in lines


def test_rafdb_both_layouts_agree(tmp_path):
  built = {}
  for write in (fixtures.write_rafdb_official, fixtures.write_rafdb_kaggle):
    builder = prepare.prepare('rafdb', write(str(tmp_path / write.__name__)),
                              str(tmp_path / ('tfds_' + write.__name__)))
    for split in ('train', 'test'):
      assert builder.info.metadata['class_counts'][split] == list(
          fixtures.RAFDB_COUNTS[split])
      _check_levels(builder, split)
      built.setdefault(split, []).append(
          sorted(_labels_and_levels(builder, split)))
  assert builder.info.features['label'].names[3] == 'happiness'
  for split, (official, kaggle) in built.items():
    np.testing.assert_allclose(official, kaggle, atol=1e-6, err_msg=split)


@pytest.fixture(scope='module')
def ckplus_rows(tmp_path_factory):
  root = fixtures.write_ckplus(str(tmp_path_factory.mktemp('ckplus')))
  rows = ckplus._files(root)
  return root, ([f['label'] for _, _, f in rows],
                [f['subject'] for _, _, f in rows])


def test_ckplus_ancestor_protocol_blocks(ckplus_rows):
  _, (labels, subjects) = ckplus_rows
  assert len(labels) == 981
  starts = np.concatenate([[0], np.cumsum(np.bincount(labels))])
  assert list(starts) == [0, 135, 312, 387, 594, 678, 927, 981]
  tests = [ckplus.test_indices('ancestor', f, labels, subjects)
           for f in range(1, 11)]
  assert sum(len(t) for t in tests) == 990  # pooled predictions
  fold1 = tests[0]
  # Fold 1 tests the first n[j] images of every class.
  assert list(fold1[:12]) == list(range(12))
  assert list(fold1[12:30]) == list(range(135, 153))
  # Fold 9's fear block (312 + 8 * 9 = 384 ..) runs into 6 happy images.
  fear_block = [i for i in tests[8] if 384 <= i < 393]
  assert fear_block == list(range(384, 393))
  assert sum(labels[i] == 3 for i in fear_block) == 6
  # Fold 10 counts back from each class's end.
  assert set(range(981 - 6, 981)) <= set(tests[9])
  assert set(range(135 - 12, 135)) <= set(tests[9])
  never = set(range(981)) - set(np.concatenate(tests))
  assert never  # some images are never tested, as in the ancestor


def test_ckplus_subject_protocol_never_splits_a_subject(ckplus_rows):
  _, (labels, subjects) = ckplus_rows
  subjects = np.array(subjects)
  tests = [ckplus.test_indices('subject', f, labels, subjects)
           for f in range(1, 11)]
  assert sorted(np.concatenate(tests)) == list(range(981))  # a partition
  seen = {}
  for fold, test in enumerate(tests):
    for s in set(subjects[test]):
      assert seen.setdefault(s, fold) == fold, f'subject {s} in two folds'
  sizes = [len(t) for t in tests]
  assert max(sizes) - min(sizes) <= 10, sizes


def test_ckplus_folds_through_the_pipeline(ckplus_rows, tmp_path):
  root, _ = ckplus_rows
  builder = prepare.prepare('ckplus', root, str(tmp_path))
  config = ml_config(protocol='ancestor', fold=9)
  test = builder.split_source('test', config)
  train = builder.split_source('train', config)
  assert (len(test), len(train)) == (99, 981 - 99)
  # Fold 9's test set holds 6 happy images from the fear block: 27 happy.
  assert sum(int(test[i]['label']) == 3 for i in range(len(test))) == 27
  _check_levels(builder, 'images')
  with pytest.raises(ValueError, match=r'config.data.fold=11'):
    builder.split_source('test', ml_config(fold=11))


def ml_config(**fields):
  import ml_collections  # pylint: disable=g-import-not-at-top
  return ml_collections.ConfigDict(
      dict(dict(protocol='ancestor', fold=1, holdout=0, train_split='train'),
           **fields))


@pytest.mark.parametrize('damage, message', [
    ('truncate', 'not a readable image'),
    ('resize', 'image is 40x40, expected 48x48'),
    ('fifo', 'a FIFO, not a regular file'),
])
def test_bad_image_names_the_file_or_is_skipped(tmp_path, damage, message):
  raw = fixtures.write_fer2013_folders(str(tmp_path / 'raw'))
  bad = os.path.join(raw, 'train', 'happy',
                     sorted(os.listdir(os.path.join(raw, 'train', 'happy')))[0])
  if damage == 'truncate':
    with open(bad, 'rb') as f:
      head = f.read(200)
    with open(bad, 'wb') as f:
      f.write(head)
  elif damage == 'fifo':  # opening one blocks until someone writes to it
    os.remove(bad)
    os.mkfifo(bad)
  else:
    fixtures.write_image(bad, 3, (40, 40, 1), 'JPEG')
  with within(120), pytest.raises(images.BadInputError,
                                  match=message) as error:
    prepare.prepare('fer2013', raw, str(tmp_path / 'tfds'))
  assert bad in str(error.value)
  # Nothing half-built is left where the next run would read it.
  assert not pipeline.manual_builder('fer2013',
                                     str(tmp_path / 'tfds')).is_prepared()
  with within(120):
    builder = prepare.prepare('fer2013', raw, str(tmp_path / 'tfds'),
                              skip_bad_images=True)
  assert builder.info.splits['train'].num_examples == 16
  assert builder.info.metadata['skipped'] == {'train': 1}
  assert any('1 bad images skipped' in line
             for line in prepare.summary(builder))


@pytest.mark.parametrize('make, message', [
    (lambda root: os.makedirs(root), 'holds neither fer2013.csv nor'),
    (lambda root: fixtures.write_fer2013_csv(
        root, [['7', ' '.join(['0'] * 2304), 'Training']]),
     r'fer2013.csv:2: label 7 outside 0..6'),
    (lambda root: fixtures.write_fer2013_csv(
        root, [['1', '0 0 0', 'Training']]), r'fer2013.csv:2: 3 pixels'),
    (lambda root: fixtures.write_fer2013_csv(
        root, [['1', ' '.join(['0'] * 2304), 'Validation']]),
     r"fer2013.csv:2: Usage 'Validation'"),
])
def test_fer2013_bad_input(tmp_path, make, message):
  root = str(tmp_path / 'raw')
  make(root)
  with pytest.raises(images.BadInputError, match=message):
    prepare.prepare('fer2013', root, str(tmp_path / 'tfds'))


def test_duplicate_key_and_missing_label_file(tmp_path):
  raf = fixtures.write_rafdb_official(str(tmp_path / 'raf'))
  labels = os.path.join(raf, 'EmoLabel', 'list_patition_label.txt')
  with open(labels, 'a') as f:
    f.write('train_00002.jpg 4\n')
  with pytest.raises(images.BadInputError,
                     match="duplicate key 'train_00002.jpg'"):
    prepare.prepare('rafdb', raf, str(tmp_path / 'tfds'))
  os.remove(labels)
  with pytest.raises(images.BadInputError,
                     match='list_patition_label.txt: missing label file'):
    prepare.prepare('rafdb', raf, str(tmp_path / 'tfds'))


def test_16bit_png_and_tiff_are_stored_as_their_8bit_picture(tmp_path):
  # Pillow's convert('L') clips 16-bit values to 255: a white face.
  raw = fixtures.write_fer2013_folders(str(tmp_path / 'fer'))
  folder = os.path.join(raw, 'train', 'angry')
  original = os.path.join(folder, sorted(os.listdir(folder))[0])
  expected = images.read_image(original, (48, 48, 1))
  copies = fixtures.write_16bit_copies(original)
  for copy in copies:
    np.testing.assert_array_equal(images.read_image(copy, (48, 48, 1)),
                                  expected)
  builder = prepare.prepare('fer2013', raw, str(tmp_path / 'tfds'))
  source = builder.as_data_source(split='train')
  stored = [source[i]['image'] for i in range(len(source))]
  assert sum(np.array_equal(image, expected) for image in stored) == 3
  _check_levels(builder, 'train')


def test_fer2013_same_name_in_two_classes_is_two_images(tmp_path):
  # As in the real Kaggle release (train/neutral and train/surprise both
  # hold a different Training_52789098.jpg).
  raw = fixtures.write_fer2013_folders(str(tmp_path / 'fer'))
  name = sorted(os.listdir(os.path.join(raw, 'train', 'happy')))[0]
  fixtures.write_image(os.path.join(raw, 'train', 'sad', name), 4,
                       (48, 48, 1))
  builder = prepare.prepare('fer2013', raw, str(tmp_path / 'tfds'))
  assert builder.info.splits['train'].num_examples == 18
  _check_levels(builder, 'train')


def test_prepare_cli_one_line_error(tmp_path):
  missing = str(tmp_path / 'nowhere')
  result = subprocess.run(
      [sys.executable, '-m', 'fer_jax.data.prepare', '--dataset=fer2013',
       f'--manual_dir={missing}', f'--data_dir={tmp_path}'],
      cwd=REPO, capture_output=True, text=True, check=False)
  assert result.returncode != 0
  assert result.stderr.strip().splitlines()[-1] == (
      f'error: {missing}: not a directory; expected the FER2013 download')


def test_an_evaluation_split_without_images_is_one_clear_error(tmp_path):
  # Seven subjects in ten subject-independent folds: fold 10 tests none.
  from configs import uvgg_ckplus  # pylint: disable=g-import-not-at-top
  from fer_jax import train  # pylint: disable=g-import-not-at-top
  root = fixtures.write_ckplus(str(tmp_path / 'ckplus'), {
      name: 3 for name in ckplus.CLASS_NAMES})
  data_dir = str(tmp_path / 'tfds')
  prepare.prepare('ckplus', root, data_dir)
  config = uvgg_ckplus.get_config()
  config.data.update(data_dir=data_dir, fold=10, protocol='subject',
                     threads=1)
  config.update(batch_size=8, eval_batch_size=8, epochs=1)
  config.model.width = 1 / 16
  with pytest.raises(errors.UserError, match=(
      r"config.data.eval_splits: 'test' of 'ckplus' has no images")):
    train.train_and_evaluate(config, str(tmp_path / 'run'))
  assert not os.path.exists(tmp_path / 'run' / 'checkpoints')


def _fold_run(fold, epochs=2, trained=2, **data):
  return {'config': {'epochs': epochs, 'data': dict(fold=fold, **data)},
          'history': [{'eval': {'test': {}}}] * trained}


@pytest.mark.parametrize('runs, message', [
    ([_fold_run(1), _fold_run(2, trained=1)], 'b: trained 1 of 2 epochs'),
    ([_fold_run(1), _fold_run(1)], 'a and b are both fold 1'),
    ([_fold_run(1), _fold_run(2, protocol='subject')],
     "b: config.data.protocol='subject', but a has '<absent>'"),
    ([_fold_run(1), _fold_run(2, epochs=3, trained=3)],
     'b: config.epochs=3, but a has 2'),
])
def test_pooling_refuses_unfinished_repeated_or_unlike_folds(runs, message):
  from fer_jax import pool_folds  # pylint: disable=g-import-not-at-top
  with pytest.raises(errors.UserError, match=message):
    pool_folds.check(list(zip('ab', runs)), partial=True)


def test_ckplus_config_trains_folds_and_pools(ckplus_rows, tmp_path):
  from configs import uvgg_ckplus  # pylint: disable=g-import-not-at-top
  from fer_jax import pool_folds  # pylint: disable=g-import-not-at-top
  from fer_jax import train  # pylint: disable=g-import-not-at-top
  from fer_jax import evaluation  # pylint: disable=g-import-not-at-top
  root, _ = ckplus_rows
  data_dir = str(tmp_path / 'tfds')
  prepare.prepare('ckplus', root, data_dir)
  workdirs, confusion = [], 0
  for fold in (1, 10):
    config = uvgg_ckplus.get_config()
    config.data.update(data_dir=data_dir, fold=fold, threads=1)
    config.model.width = 1 / 16
    config.epochs, config.log_every = 1, 100
    workdirs.append(str(tmp_path / f'fold{fold}'))
    _, history = train.train_and_evaluate(config, workdirs[-1])
    confusion = confusion + np.array(history[-1]['eval']['test']['confusion'])
  with pytest.raises(errors.UserError,
                     match='folds 2, 3, 4, 5, 6, 7, 8, 9 are missing'):
    pool_folds.pool(workdirs)
  last, best, n, missing = pool_folds.pool(workdirs, partial=True)
  assert missing == list(range(2, 10))
  assert n == 2 * 99
  assert last == best == np.trace(confusion) / n  # one epoch: last is best
  with pytest.raises(errors.UserError, match='are both fold 1'):
    pool_folds.pool([workdirs[0], workdirs[0]], partial=True)
  # Another fold in fold 1's workdir would report (or train on from) fold
  # 1's run, whose training images hold fold 2's test images.
  config.data.fold = 2
  for run in (train.train_and_evaluate, evaluation.evaluate):
    with pytest.raises(errors.UserError, match=(
        r'holds another run: config\.data\.fold=2 \(the run has 1\)')):
      run(config, workdirs[0])


def test_os_metadata_files_in_class_folders_are_ignored(tmp_path):
  raw = fixtures.write_fer2013_folders(str(tmp_path / 'raw'))
  for junk in ('train/happy/.DS_Store', 'test/._PublicTest_1.jpg',
               'train/Thumbs.db', '.DS_Store'):
    with open(os.path.join(raw, junk), 'wb') as f:
      f.write(b'\0\1junk')
  builder = prepare.prepare('fer2013', raw, str(tmp_path / 'tfds'))
  assert builder.info.splits['train'].num_examples == 17


@pytest.mark.parametrize('encoding, error', [
    ('utf-8-sig', None),  # Excel's byte-order mark
    ('latin-1', r'fer2013.csv:2: not UTF-8 text'),
])
def test_fer2013_csv_encodings(tmp_path, encoding, error):
  raw = fixtures.write_fer2013_csv(str(tmp_path / 'raw'))
  path = os.path.join(raw, 'fer2013.csv')
  with open(path, encoding='utf-8') as f:
    text = f.read()
  if error:  # a stray non-UTF-8 byte in a data row
    text = text.replace('\n0,', '\n0\xe9,', 1)
  with open(path, 'w', encoding=encoding) as f:
    f.write(text)
  if error is None:
    builder = prepare.prepare('fer2013', raw, str(tmp_path / 'tfds'))
    assert builder.info.splits['train'].num_examples == 17
  else:
    with pytest.raises(images.BadInputError, match=error):
      prepare.prepare('fer2013', raw, str(tmp_path / 'tfds'))


def test_skipping_every_image_of_a_split_is_one_clear_error(tmp_path):
  raw = fixtures.write_fer2013_folders(str(tmp_path / 'raw'))
  for path in glob.glob(os.path.join(raw, 'test', '*', 'PublicTest_*')):
    with open(path, 'wb') as f:
      f.write(b'not a jpeg')
  with pytest.raises(images.BadInputError,
                     match=r"split 'validation' of fer2013: all its 8 images "
                     'were skipped'):
    prepare.prepare('fer2013', raw, str(tmp_path / 'tfds'),
                    skip_bad_images=True)


def test_a_killed_preparation_leaves_nothing_behind_for_the_next(tmp_path):
  raw = fixtures.write_fer2013_folders(str(tmp_path / 'raw'))
  stale = tmp_path / 'tfds' / 'fer2013' / 'incomplete.ABC123_1.0.0'
  stale.mkdir(parents=True)
  (stale / 'fer2013-train.array_record-00000-of-00001').write_bytes(b'x')
  builder = prepare.prepare('fer2013', raw, str(tmp_path / 'tfds'))
  assert builder.info.splits['train'].num_examples == 17
  assert not stale.exists()
