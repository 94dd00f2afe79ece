"""CK+ (Lucey et al., 2010) in the CK+48 folder layout, with 10-fold protocols.

`manual_dir` holds (directly or in a `CK+48/` folder) the class folders anger,
contempt, disgust, fear, happy, sadness, surprise of 48x48 grayscale PNGs
named `S###_###_########.png` (subject, sequence, frame): 981 images.

The builder stores one split, `images`, and serves a run the `train` and
`test` of its fold (`Ckplus.split_indices`). Each image keeps its index in
the order the protocols count in: the classes concatenated as anger,
disgust, fear, happy, sadness, surprise, contempt (the labels 0..6), each
sorted by file name. The folds are computed from it (`test_indices`):

  * `ancestor`: the protocol of WuJie1010/Facial-Expression-Recognition.Pytorch
    (CK.py), which the U-VGG19 paper follows, reproduced index for index.
    With class starts s = [0, 135, 312, 387, 594, 678, 927, 981] and
    n = [12, 18, 9, 21, 9, 24, 6], fold f in 1..9 tests s[j] + (f-1)*n[j] + k
    for k < n[j]; fold 10 tests s[j+1] - 1 - k. It is quirky, on purpose
    kept: fold 9's fear block runs into 6 happy images, some images are never
    tested, and the 10 folds pool 990 predictions. Sequences of one subject
    appear in train and test, so its accuracy is optimistic.
  * `subject`: subject-independent folds, every subject's images in exactly
    one fold, subjects assigned greedily so that each fold's class counts stay
    close to a tenth of the total.

  python -m fer_jax.data.prepare --dataset=ckplus --manual_dir=PATH
"""
import os
import re

import numpy as np
import tensorflow_datasets as tfds

from fer_jax import errors
from fer_jax.data import images

CLASS_NAMES = ('anger', 'disgust', 'fear', 'happy', 'sadness', 'surprise',
               'contempt')
SHAPE = (48, 48, 1)
NAME = re.compile(r'S(\d{3})_(\d{3})_(\d{8})\.png')
# Test images per class and fold in the ancestor protocol.
ANCESTOR_FOLD_SIZES = (12, 18, 9, 21, 9, 24, 6)
PROTOCOLS = ('ancestor', 'subject')
FOLDS = 10


def layout(manual_dir):
  """The folder holding the class folders: `manual_dir` or its CK+48/."""
  images.require_dir(manual_dir, 'the CK+48 class folders')
  if os.path.isdir(os.path.join(manual_dir, 'CK+48')):
    manual_dir = os.path.join(manual_dir, 'CK+48')
  names = images.listdir(manual_dir)
  for name in names:
    if name not in CLASS_NAMES:
      raise images.BadInputError(
          f'{os.path.join(manual_dir, name)}: not a CK+48 class folder; '
          f'expected {sorted(CLASS_NAMES)}')
  if not names:
    raise images.BadInputError(f'{manual_dir}: empty; expected the CK+48 '
                               f'class folders {sorted(CLASS_NAMES)}')
  return manual_dir


def _files(manual_dir):
  """[(key, path, fields)] in protocol order (class, then file name)."""
  manual_dir = layout(manual_dir)
  rows = []
  for label, name in enumerate(CLASS_NAMES):
    folder = images.require_dir(os.path.join(manual_dir, name),
                                f'the {name} images')
    for file in images.listdir(folder):
      match = NAME.fullmatch(file)
      if not match:
        raise images.BadInputError(f'{os.path.join(folder, file)}: expected '
                                   'a name like S005_001_00000011.png')
      rows.append((file, os.path.join(folder, file),
                   {'label': label, 'index': len(rows),
                    'subject': int(match.group(1))}))
  images.check_unique((key, path) for key, path, _ in rows)
  return rows


def test_indices(protocol, fold, labels, subjects):
  """Sorted indices (into the protocol order) that fold `fold` tests.

  `labels` and `subjects` are per image in protocol order.
  """
  if protocol not in PROTOCOLS:
    raise errors.UserError(
        f'config.data.protocol={protocol!r}: expected one of '
        f'{PROTOCOLS}')
  if not 1 <= fold <= FOLDS:
    raise errors.UserError(f'config.data.fold={fold}: expected 1..{FOLDS}')
  labels = np.asarray(labels)
  if protocol == 'ancestor':
    starts = np.concatenate(
        [[0], np.cumsum(np.bincount(labels, minlength=len(CLASS_NAMES)))])
    test = [starts[j] + (fold - 1) * n + k if fold < FOLDS
            else starts[j + 1] - 1 - k
            for j, n in enumerate(ANCESTOR_FOLD_SIZES) for k in range(n)]
    if max(test) >= len(labels):
      raise errors.UserError(
          f'CK+ with {len(labels)} images is too small for the '
          'ancestor protocol, which expects the 981 of CK+48')
    return np.array(sorted(test))
  return np.flatnonzero(np.isin(subjects, subject_folds(labels,
                                                        subjects)[fold - 1]))


def subject_folds(labels, subjects):
  """FOLDS lists of subjects: each subject in one, class counts balanced."""
  labels, subjects = np.asarray(labels), np.asarray(subjects)
  ids = np.unique(subjects)
  per_subject = {s: np.bincount(labels[subjects == s],
                                minlength=len(CLASS_NAMES)) for s in ids}
  counts = np.zeros((FOLDS, len(CLASS_NAMES)))
  folds = [[] for _ in range(FOLDS)]
  # Largest subjects first, each to the fold it unbalances least.
  for s in sorted(ids, key=lambda s: (-per_subject[s].sum(), s)):
    fold = int(np.argmin([np.sum((c + per_subject[s])**2) for c in counts]))
    counts[fold] += per_subject[s]
    folds[fold].append(int(s))
  return folds


def files(manual_dir):
  return {'images': _files(manual_dir)}


class Ckplus(images.ManualBuilder):
  """CK+48: 48x48x1 uint8, 7 classes, one split `images` in protocol order."""
  MANUAL_DOWNLOAD_INSTRUCTIONS = __doc__
  SHAPE, CLASS_NAMES = SHAPE, CLASS_NAMES
  EXTRA_FEATURES = {
      'index': tfds.features.Tensor(shape=(), dtype=np.int32),
      'subject': tfds.features.Tensor(shape=(), dtype=np.int32),
  }
  layout, files = staticmethod(layout), staticmethod(files)

  def split_indices(self, split, data_config):
    """('images', indices) of 'train' or 'test' of config.data.fold under
    config.data.protocol."""
    if split not in ('train', 'test'):
      raise errors.UserError(f"split {split!r} of 'ckplus': expected 'train' "
                             "or 'test' (of config.data.fold)")
    source = self.as_data_source(split='images')
    records = [source[i] for i in range(len(source))]
    order = np.argsort([r['index'] for r in records])  # the protocol's order
    test = test_indices(data_config.protocol, data_config.fold,
                        [records[i]['label'] for i in order],
                        [records[i]['subject'] for i in order])
    positions = (test if split == 'test'
                 else np.setdiff1d(np.arange(len(order)), test))
    return 'images', order[positions]
