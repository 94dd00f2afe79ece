"""Small generated copies of the real downloads, in their exact layouts.

Each image's brightness encodes its class (40 + 25 * class index in the
dataset's own order), so a test can check labels after JPEG compression.
"""
import csv
import os
import zlib

import numpy as np
from PIL import Image

from fer_jax.data import ckplus
from fer_jax.data import fer2013
from fer_jax.data import rafdb


def level(label):
  return 40 + 25 * label


def write_image(path, label, shape, fmt=None):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  rng = np.random.default_rng(zlib.crc32(os.path.basename(path).encode()))
  array = np.clip(level(label) + rng.integers(-3, 4, shape), 0, 255)
  array = array.astype(np.uint8)
  Image.fromarray(array[..., 0] if shape[2] == 1 else array).save(path, fmt)


def write_16bit_copies(path):
  """Beside the 8-bit grey image at `path`, the same picture as 16-bit PNG
  and TIFF files (value v becomes 257 v, which maps back to v exactly);
  returns their paths."""
  with Image.open(path) as picture:
    deep = np.asarray(picture.convert('L')).astype(np.uint16) * 257
  stem = os.path.splitext(path)[0]
  copies = [stem + '_16bit.png', stem + '_16bit.tif']
  for copy in copies:
    Image.fromarray(deep).save(copy)  # mode I;16
  return copies


# Images per split and class: (train, PublicTest, PrivateTest).
FER2013_COUNTS = ((3, 1, 2), (1, 1, 1), (2, 1, 1), (4, 2, 1), (2, 1, 1),
                  (2, 1, 1), (3, 1, 2))


def write_fer2013_folders(root):
  """train/<class>/Training_*.jpg, test/<class>/{Public,Private}Test_*.jpg."""
  number = 0
  for label, name in enumerate(fer2013.CLASS_NAMES):
    for prefix, n in zip(('Training', 'PublicTest', 'PrivateTest'),
                         FER2013_COUNTS[label]):
      folder = 'train' if prefix == 'Training' else 'test'
      for _ in range(n):
        number += 1
        write_image(os.path.join(root, folder, name,
                                 f'{prefix}_{10000000 + number * 7919}.jpg'),
                    label, fer2013.SHAPE)
  return root


def write_fer2013_csv(root, rows=None):
  """fer2013.csv with the same counts; `rows` overrides the data rows."""
  os.makedirs(root, exist_ok=True)
  if rows is None:
    rows = []
    for label, counts in enumerate(FER2013_COUNTS):
      for usage, n in zip(('Training', 'PublicTest', 'PrivateTest'), counts):
        pixels = ' '.join([str(level(label))] * 2304)
        rows += [[str(label), pixels, usage]] * n
  with open(os.path.join(root, 'fer2013.csv'), 'w', newline='') as f:
    writer = csv.writer(f)
    writer.writerow(['emotion', 'pixels', 'Usage'])
    writer.writerows(rows)
  return root


# CK+48's images per class, in its folder names.
CKPLUS_COUNTS = {'anger': 135, 'contempt': 54, 'disgust': 177, 'fear': 75,
                 'happy': 207, 'sadness': 84, 'surprise': 249}


def write_ckplus(root, counts=None):
  """<class>/S###_###_########.png: 3 last frames per sequence, like CK+48."""
  counts = counts or CKPLUS_COUNTS
  sequence = 0
  for name, n in counts.items():
    label = ckplus.CLASS_NAMES.index(name)
    for i in range(n):
      if i % 3 == 0:
        sequence += 1
      subject = 10 + sequence % 118  # 118 subjects, as in CK+
      frame = 10 + i % 3
      write_image(os.path.join(
          root, name, f'S{subject:03d}_{sequence % 9 + 1:03d}_{frame:08d}.png'),
                  label, ckplus.SHAPE)
  return root


def _rafdb_names(split, n):
  digits = 5 if split == 'train' else 4
  return [f'{split}_{i:0{digits}d}' for i in range(1, n + 1)]


# Images per class (labels 1..7) of the fixture: train, test.
RAFDB_COUNTS = {'train': (2, 1, 1, 3, 2, 1, 2), 'test': (1, 1, 1, 1, 1, 1, 1)}


def _rafdb_labels(split):
  return [label for label, n in enumerate(RAFDB_COUNTS[split])
          for _ in range(n)]


def write_rafdb_official(root):
  """EmoLabel/list_patition_label.txt and Image/aligned/*_aligned.jpg."""
  lines = []
  for split in ('train', 'test'):
    labels = _rafdb_labels(split)
    for name, label in zip(_rafdb_names(split, len(labels)), labels):
      lines.append(f'{name}.jpg {label + 1}\n')
      write_image(os.path.join(root, 'Image', 'aligned',
                               f'{name}_aligned.jpg'), label, rafdb.SHAPE)
  os.makedirs(os.path.join(root, 'EmoLabel'), exist_ok=True)
  with open(os.path.join(root, 'EmoLabel', 'list_patition_label.txt'),
            'w') as f:
    f.writelines(lines)
  return root


def write_rafdb_kaggle(root):
  """DATASET/<split>/<1..7>/*_aligned.jpg and <split>_labels.csv."""
  for split in ('train', 'test'):
    labels = _rafdb_labels(split)
    rows = []
    for name, label in zip(_rafdb_names(split, len(labels)), labels):
      rows.append([f'{name}_aligned.jpg', label + 1])
      write_image(os.path.join(root, 'DATASET', split, str(label + 1),
                               f'{name}_aligned.jpg'), label, rafdb.SHAPE)
    with open(os.path.join(root, f'{split}_labels.csv'), 'w',
              newline='') as f:
      csv.writer(f).writerows([['image', 'label']] + rows)
  return root
