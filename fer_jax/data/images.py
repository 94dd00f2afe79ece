"""Reading the images and label files of hand-downloaded datasets.

Every error names the file and what was expected. With `skip_bad=True` an
unreadable, truncated or wrongly sized image is left out instead; the builders
count it in the dataset info (`metadata['skipped']`).
"""
import abc
import os

import numpy as np
import tensorflow_datasets as tfds

from fer_jax import errors
from fer_jax import image_files
from fer_jax.data import splits


class BadInputError(errors.UserError):
  """A file of a manual download that does not hold what was expected."""


def read_image(path, shape):
  """The image at `path` as uint8 of `shape` (H, W, 1 for grey, 3 for RGB),
  decoded by `fer_jax.image_files` (regular files only, 16-bit scaled)."""
  array = image_files.read(path, {1: 'L', 3: 'RGB'}[shape[2]], BadInputError)
  array = array.reshape(*array.shape[:2], shape[2])
  if array.shape != tuple(shape):
    raise BadInputError(f'{path}: image is {array.shape[1]}x{array.shape[0]}'
                        f', expected {shape[1]}x{shape[0]}')
  return array


class ImageReader:
  """`read_image` that, when `skip_bad`, reports and returns None instead."""

  def __init__(self, shape, skip_bad=False):
    self.shape, self.skip_bad = tuple(shape), skip_bad

  def __call__(self, path):
    try:
      return read_image(path, self.shape)
    except BadInputError as e:
      if not self.skip_bad:
        raise
      print(f'skipped {e}')
      return None


def check_label(label, num_classes, where):
  if not 0 <= label < num_classes:
    raise BadInputError(f'{where}: label {label} outside 0..{num_classes - 1}')
  return label


def check_unique(keys_and_paths):
  """Raises on the first key (file name) that occurs twice."""
  seen = {}
  for key, path in keys_and_paths:
    if key in seen:
      raise BadInputError(f'duplicate key {key!r}: {seen[key]} and {path}')
    seen[key] = path


# Files that operating systems and file managers leave in folders.
_SYSTEM_FILES = ('Thumbs.db', 'desktop.ini')


def listdir(path):
  """The sorted entries of `path`, less hidden files (`.DS_Store`, macOS's
  `._*`) and Windows' `Thumbs.db`/`desktop.ini`, which are never data."""
  return sorted(name for name in os.listdir(path)
                if not name.startswith('.') and name not in _SYSTEM_FILES)


def text_lines(path):
  """Yields the lines of a UTF-8 text file, with or without a byte-order
  mark (Excel writes one); other bytes are an error naming file and line."""
  with open(path, 'rb') as f:
    for number, line in enumerate(f, start=1):
      try:
        text = line.decode('utf-8-sig' if number == 1 else 'utf-8')
      except UnicodeDecodeError as e:
        raise BadInputError(
            f'{path}:{number}: not UTF-8 text (byte '
            f'{line[e.start:e.start + 1]!r}); save it as UTF-8') from None
      # Universal newlines, as text mode would give them.
      yield text.replace('\r\n', '\n').replace('\r', '\n')


def require_dir(path, what):
  if not os.path.isdir(path):
    raise BadInputError(f'{path}: not a directory; expected {what}')
  return path


def start_counts(metadata):
  """Per-split class counts and skipped files, kept in the dataset info."""
  metadata['class_counts'], metadata['skipped'] = {}, {}


def count(metadata, split, label, num_classes):
  metadata['class_counts'].setdefault(split, [0] * num_classes)[label] += 1


def examples(builder, split, rows):
  """Yields (key, example) for rows of (key, image file or array, fields),
  fields holding 'label' and any other features; counts classes and skipped
  files in `builder.info.metadata` (see `start_counts`)."""
  metadata = builder.info.metadata
  num_classes = builder.info.features['label'].num_classes
  kept = 0
  for key, path, fields in rows:
    image = path if isinstance(path, np.ndarray) else builder.reader(path)
    if image is None:
      metadata['skipped'][split] = metadata['skipped'].get(split, 0) + 1
      continue
    count(metadata, split, fields['label'], num_classes)
    kept += 1
    yield key, {'image': image, **fields}
  if not kept:
    raise BadInputError(
        f'split {split!r} of {builder.name}: all its '
        f'{metadata["skipped"].get(split, 0)} images were skipped as bad; '
        'nothing to build it from')


class ManualBuilder(splits.StoredSplits, tfds.core.GeneratorBasedBuilder,
                    abc.ABC):
  """A builder reading a hand-downloaded layout; subclasses say which.

  Subclasses set SHAPE, CLASS_NAMES, EXTRA_FEATURES (name -> feature), the
  docstring-as-instructions, and define `layout(manual_dir)` (raises on a
  folder holding no known layout) and `files(manual_dir)` ({split: rows of
  (key, image file or array, fields)}).
  """
  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'First release.'}
  SHAPE: tuple[int, int, int]
  CLASS_NAMES: tuple[str, ...]
  EXTRA_FEATURES = {}

  def __init__(self, *, skip_bad_images=False, **kwargs):
    self.reader = ImageReader(self.SHAPE, skip_bad_images)
    super().__init__(**kwargs)

  @staticmethod
  @abc.abstractmethod
  def layout(manual_dir):
    """Checks that `manual_dir` holds a layout this builder reads."""

  @staticmethod
  @abc.abstractmethod
  def files(manual_dir):
    """{split: [(key, image file or array, fields)]}, checked."""

  def _info(self):
    return self.dataset_info_from_configs(
        description=self.MANUAL_DOWNLOAD_INSTRUCTIONS,
        features=tfds.features.FeaturesDict({
            # Raw tensors, not features.Image: encoding images in TFDS needs
            # TensorFlow, which is not a dependency.
            'image': tfds.features.Tensor(shape=self.SHAPE, dtype=np.uint8),
            'label': tfds.features.ClassLabel(names=self.CLASS_NAMES),
            **self.EXTRA_FEATURES,
        }),
        supervised_keys=('image', 'label'),
        metadata=tfds.core.MetadataDict(),
    )

  def _split_generators(self, dl_manager):
    files = self.files(os.fspath(dl_manager.manual_dir))
    start_counts(self.info.metadata)
    return {split: self._generate_examples(split, rows)
            for split, rows in files.items()}

  def _generate_examples(self, split, rows):
    return examples(self, split, rows)
