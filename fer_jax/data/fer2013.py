"""FER2013 (Goodfellow et al., 2013) from a manual download, either layout.

Splits: `train` = Training (28,709), `validation` = PublicTest (3,589), `test`
= PrivateTest (3,589); 48x48 grayscale; labels in FER2013's order (0 angry,
1 disgust, 2 fear, 3 happy, 4 sad, 5 surprise, 6 neutral).

`manual_dir` holds either
  * `fer2013.csv` (the original release: columns emotion, pixels, Usage with
    Usage in Training / PublicTest / PrivateTest), or
  * the Kaggle image folders `train/<class>/Training_*.jpg` and
    `test/<class>/PublicTest_*.jpg`, `test/<class>/PrivateTest_*.jpg`, class
    folders named angry, disgust, fear, happy, neutral, sad, surprise.

  python -m fer_jax.data.prepare --dataset=fer2013 --manual_dir=PATH
"""
import collections
import csv
import os

import numpy as np

from fer_jax.data import images

CLASS_NAMES = ('angry', 'disgust', 'fear', 'happy', 'sad', 'surprise',
               'neutral')
SHAPE = (48, 48, 1)
# Usage column / file-name prefix -> split.
SPLITS = {'Training': 'train', 'PublicTest': 'validation',
          'PrivateTest': 'test'}
FOLDERS = {'train': ('Training',), 'test': ('PublicTest', 'PrivateTest')}


def _csv_examples(path):
  """Yields (split, key, image, label) from fer2013.csv."""
  reader = csv.reader(images.text_lines(path))
  header = next(reader, None)
  if header is None or [h.strip() for h in header[:3]] != [
      'emotion', 'pixels', 'Usage']:
    raise images.BadInputError(
        f'{path}: header {header}, expected emotion,pixels,Usage')
  for line, row in enumerate(reader, start=2):
    where = f'{path}:{line}'
    if len(row) < 3:
      raise images.BadInputError(f'{where}: {len(row)} columns, expected 3')
    if row[2] not in SPLITS:
      raise images.BadInputError(
          f'{where}: Usage {row[2]!r}, expected one of {list(SPLITS)}')
    try:
      label = int(row[0])
      pixels = np.array(row[1].split(), np.int64)
    except ValueError:
      raise images.BadInputError(
          f'{where}: expected an integer emotion and integer pixels'
      ) from None
    if pixels.size != 48 * 48 or pixels.min() < 0 or pixels.max() > 255:
      raise images.BadInputError(
          f'{where}: {pixels.size} pixels, expected 2304 values in 0..255')
    yield (SPLITS[row[2]], f'row{line - 1:05d}',
           pixels.astype(np.uint8).reshape(SHAPE),
           images.check_label(label, len(CLASS_NAMES), where))


def _folder_files(manual_dir):
  """{split: [(key, path, {'label': label})]} from the Kaggle folders."""
  files = collections.defaultdict(list)
  for folder, prefixes in FOLDERS.items():
    root = images.require_dir(os.path.join(manual_dir, folder),
                              f'class folders {sorted(CLASS_NAMES)}')
    for name in images.listdir(root):
      if name not in CLASS_NAMES:
        raise images.BadInputError(
            f'{os.path.join(root, name)}: not a FER2013 class folder; '
            f'expected one of {sorted(CLASS_NAMES)}')
      for file in images.listdir(os.path.join(root, name)):
        path = os.path.join(root, name, file)
        prefix = file.split('_')[0]
        if prefix not in prefixes:
          raise images.BadInputError(
              f'{path}: expected a name starting with '
              f'{" or ".join(p + "_" for p in prefixes)}')
        # Keyed by class folder too: the Kaggle release has different
        # images under one name in two classes (Training_52789098.jpg).
        files[SPLITS[prefix]].append(
            (f'{name}/{file}', path, {'label': CLASS_NAMES.index(name)}))
  for prefix, split in SPLITS.items():
    if not files[split]:
      raise images.BadInputError(
          f'{manual_dir}: no {prefix}_*.jpg images; expected them in '
          f'{"train" if split == "train" else "test"}/<class>/')
  return files


def layout(manual_dir):
  """'csv' or 'folders': which of the two layouts `manual_dir` holds."""
  images.require_dir(manual_dir, 'the FER2013 download')
  if os.path.isfile(os.path.join(manual_dir, 'fer2013.csv')):
    return 'csv'
  if all(os.path.isdir(os.path.join(manual_dir, f)) for f in FOLDERS):
    return 'folders'
  raise images.BadInputError(
      f'{manual_dir}: holds neither fer2013.csv nor the folders train/ and '
      'test/ of the Kaggle image layout')


def files(manual_dir):
  """{split: rows} from whichever layout `manual_dir` holds."""
  if layout(manual_dir) == 'folders':
    return _folder_files(manual_dir)
  rows = collections.defaultdict(list)
  for split, key, image, label in _csv_examples(
      os.path.join(manual_dir, 'fer2013.csv')):
    rows[split].append((key, image, {'label': label}))
  if len(rows) != len(SPLITS):
    raise images.BadInputError(
        f'{manual_dir}/fer2013.csv: Usage values for {sorted(rows)}, '
        f'expected all of {list(SPLITS)}')
  return rows


class Fer2013(images.ManualBuilder):
  """FER2013, 48x48x1 uint8, from fer2013.csv or the Kaggle image folders."""
  MANUAL_DOWNLOAD_INSTRUCTIONS = __doc__
  SHAPE, CLASS_NAMES = SHAPE, CLASS_NAMES
  layout, files = staticmethod(layout), staticmethod(files)
