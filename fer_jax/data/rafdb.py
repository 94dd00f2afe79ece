"""RAF-DB basic (Li et al., 2017), 7 classes, from a manual download.

Splits `train` (12,271) and `test` (3,068) of 100x100 RGB aligned faces.
Labels: the official 1 Surprise, 2 Fear, 3 Disgust, 4 Happiness, 5 Sadness,
6 Anger, 7 Neutral, stored as 0..6 in that order.

`manual_dir` holds either the official layout
    EmoLabel/list_patition_label.txt   lines like `train_00001.jpg 5`
    Image/aligned/train_00001_aligned.jpg
or the common Kaggle layout
    DATASET/train/<1..7>/train_00001_aligned.jpg
    DATASET/test/<1..7>/test_0001_aligned.jpg
    train_labels.csv, test_labels.csv  (image,label; checked against folders)

  python -m fer_jax.data.prepare --dataset=rafdb --manual_dir=PATH
"""
import collections
import csv
import os


from fer_jax.data import images

CLASS_NAMES = ('surprise', 'fear', 'disgust', 'happiness', 'sadness', 'anger',
               'neutral')
SHAPE = (100, 100, 3)
SPLITS = ('train', 'test')
LABEL_FILE = os.path.join('EmoLabel', 'list_patition_label.txt')


def _label(text, where):
  """An official label '1'..'7' as 0..6."""
  try:
    label = int(text) - 1
  except ValueError:
    raise images.BadInputError(
        f'{where}: label {text!r}, expected 1..7') from None
  if not 0 <= label < len(CLASS_NAMES):
    raise images.BadInputError(f'{where}: label {text!r}, expected 1..7')
  return label


def _split_of(name, where):
  split = name.split('_')[0]
  if split not in SPLITS:
    raise images.BadInputError(
        f'{where}: {name!r} should start with train_ or test_')
  return split


def _official_files(manual_dir):
  """{split: [(key, path, {'label': label})]} from list_patition_label.txt."""
  label_file = os.path.join(manual_dir, LABEL_FILE)
  if not os.path.isfile(label_file):
    raise images.BadInputError(f'{label_file}: missing label file')
  files = collections.defaultdict(list)
  for line_number, line in enumerate(images.text_lines(label_file),
                                     start=1):
    if not line.strip():
      continue
    where = f'{label_file}:{line_number}'
    fields = line.split()
    if len(fields) != 2:
      raise images.BadInputError(
          f'{where}: {line.strip()!r}, expected "<name>.jpg <1..7>"')
    name, label = fields
    stem = os.path.splitext(name)[0]
    path = os.path.join(manual_dir, 'Image', 'aligned', f'{stem}_aligned.jpg')
    files[_split_of(name, where)].append(
        (name, path, {'label': _label(label, where)}))
  return files


def _kaggle_files(manual_dir):
  """{split: [(key, path, {'label': label})]} from DATASET/<split>/<1..7>/, csv-checked."""
  files = collections.defaultdict(list)
  for split in SPLITS:
    root = images.require_dir(os.path.join(manual_dir, 'DATASET', split),
                              'class folders 1..7')
    listed = _csv_labels(os.path.join(manual_dir, f'{split}_labels.csv'))
    for folder in images.listdir(root):
      label = _label(folder, os.path.join(root, folder))
      for name in images.listdir(os.path.join(root, folder)):
        path = os.path.join(root, folder, name)
        if _split_of(name, path) != split:
          raise images.BadInputError(f'{path}: a {_split_of(name, path)} '
                                     f'image in the {split} folder')
        if name in listed and listed[name] != label:
          raise images.BadInputError(
              f'{path}: in folder {folder} but {split}_labels.csv gives '
              f'{listed[name] + 1}')
        files[split].append((name, path, {'label': label}))
  return files


def _csv_labels(path):
  """{image name: label 0..6} from a Kaggle labels csv (image,label)."""
  if not os.path.isfile(path):
    raise images.BadInputError(f'{path}: missing label file')
  rows = list(csv.reader(images.text_lines(path)))
  if not rows or [h.strip() for h in rows[0][:2]] != ['image', 'label']:
    raise images.BadInputError(f'{path}: expected the header image,label')
  labels = {}
  for line_number, row in enumerate(rows[1:], start=2):
    where = f'{path}:{line_number}'
    if len(row) < 2:
      raise images.BadInputError(f'{where}: expected image,label')
    if row[0] in labels:
      raise images.BadInputError(f'{where}: duplicate key {row[0]!r}')
    labels[row[0]] = _label(row[1], where)
  return labels


def layout(manual_dir):
  """'official' or 'kaggle': which layout `manual_dir` holds."""
  images.require_dir(manual_dir, 'the RAF-DB download')
  if os.path.isdir(os.path.join(manual_dir, 'EmoLabel')):
    return 'official'
  if os.path.isdir(os.path.join(manual_dir, 'DATASET')):
    return 'kaggle'
  raise images.BadInputError(
      f'{manual_dir}: holds neither EmoLabel/ and Image/aligned/ (official) '
      'nor DATASET/ with train_labels.csv (Kaggle)')


def files(manual_dir):
  """{split: rows} from whichever layout `manual_dir` holds, keys unique."""
  rows = (_official_files if layout(manual_dir) == 'official'
          else _kaggle_files)(manual_dir)
  images.check_unique(
      (key, path) for split in rows.values() for key, path, _ in split)
  return {split: rows[split] for split in SPLITS}


class Rafdb(images.ManualBuilder):
  """RAF-DB basic, 100x100x3 uint8, from the official or the Kaggle layout."""
  MANUAL_DOWNLOAD_INSTRUCTIONS = __doc__
  SHAPE, CLASS_NAMES = SHAPE, CLASS_NAMES
  layout, files = staticmethod(layout), staticmethod(files)
