"""Input pipelines on grain: TFDS array_record sources to host batches.

Training: per-process shard -> seeded shuffle (reseeded each epoch by grain)
-> per-record augmentation with the record's own RNG -> endless repeat ->
batches of `global_batch / process_count`. Evaluation: every image exactly
once, padded to whole global batches with a `mask` that is 0 on the padding.
"""
import dataclasses

import grain
import jax
import numpy as np
from PIL import Image

from fer_jax.data import ckplus
from fer_jax.data import fer2013
from fer_jax.data import fer_synth
from fer_jax.data import rafdb

# Builders that need files the user downloads (FER2013, CK+, RAF-DB) are
# prepared once with `python -m fer_jax.data.prepare`; fer_synth is drawn on
# the fly, so it is built here on first use.
BUILDERS = {'fer_synth': fer_synth.FerSynth, 'fer2013': fer2013.Fer2013,
            'ckplus': ckplus.Ckplus, 'rafdb': rafdb.Rafdb}
EMBEDDED = ('fer_synth',)


def _builder(name, data_dir, **kwargs):
  """`name` is a dataset, or `dataset/config` as in tfds.load."""
  dataset, _, builder_config = name.partition('/')
  if dataset not in BUILDERS:
    raise ValueError(
        f'config.data.name={name!r}: no builder for this dataset in this '
        f'version of fer_jax; available: {sorted(BUILDERS)}')
  names = [c.name for c in BUILDERS[dataset].BUILDER_CONFIGS]
  if builder_config and builder_config not in names:
    raise ValueError(f'config.data.name={name!r}: {dataset!r} has the '
                     f'configurations {names}')
  return BUILDERS[dataset](config=builder_config or None,
                           data_dir=data_dir or None,
                           file_format='array_record', **kwargs)


def manual_builder(name, data_dir=None, skip_bad_images=False):
  """The builder `prepare` runs: with the bad-image policy if it reads files."""
  if name.partition('/')[0] in EMBEDDED:
    return _builder(name, data_dir)
  return _builder(name, data_dir, skip_bad_images=skip_bad_images)


def get_builder(name, data_dir=None):
  """The prepared TFDS builder of dataset `name`, building fer_synth if needed."""
  builder = _builder(name, data_dir)
  if not builder.is_prepared():
    if builder.name not in EMBEDDED:
      raise FileNotFoundError(
          f'prepared data for {name!r} not found in {builder.data_dir}: run '
          f'python -m fer_jax.data.prepare --dataset={name} --manual_dir=PATH')
    # TFDS writes into an `incomplete.*` folder and renames it when done, so
    # an interrupted build is never read as complete.
    if jax.process_index() == 0:
      builder.download_and_prepare()
    _sync('build ' + name)
    builder = _builder(name, data_dir)
  return builder


def _sync(name):
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    multihost_utils.sync_global_devices(name)


def local_batch_size(global_batch):
  if global_batch % jax.process_count():
    raise ValueError(f'batch size {global_batch} does not divide by the '
                     f'process count {jax.process_count()}')
  return global_batch // jax.process_count()


def random_crop(image, size, rng):
  h, w = image.shape[:2]
  y, x = rng.integers(0, h - size + 1), rng.integers(0, w - size + 1)
  return image[y:y + size, x:x + size]


def cutout(image, holes, length, rng):
  """Zeroes `holes` squares of side `length` centred anywhere in the image.

  As in DeVries & Taylor (2017), "Improved regularization of convolutional
  neural networks with Cutout": the centre may lie near the border, in which
  case the square is clipped.
  """
  image = image.copy()
  h, w = image.shape[:2]
  for _ in range(holes):
    cy, cx = rng.integers(0, h), rng.integers(0, w)
    image[max(cy - length // 2, 0):cy + (length + 1) // 2,
          max(cx - length // 2, 0):cx + (length + 1) // 2] = 0
  return image


def ten_crop(image, size):
  """The four corner crops, the centre crop and their mirrors: (10, s, s, c)."""
  h, w = image.shape[:2]
  cy, cx = (h - size) // 2, (w - size) // 2
  offsets = [(0, 0), (0, w - size), (h - size, 0), (h - size, w - size),
             (cy, cx)]
  crops = np.stack([image[y:y + size, x:x + size] for y, x in offsets])
  return np.concatenate([crops, crops[:, :, ::-1]])


def centre_crop(image, size):
  h, w = image.shape[:2]
  y, x = (h - size) // 2, (w - size) // 2
  return image[y:y + size, x:x + size]


def resize(image, height, width):
  """Bilinear resize of an (H, W, C) uint8 image."""
  resized = Image.fromarray(image[..., 0] if image.shape[2] == 1 else image)
  resized = np.asarray(resized.resize((width, height), Image.BILINEAR))
  return resized.reshape(height, width, image.shape[2])


def random_resized_crop(image, size, scale, rng, ratio=(3 / 4, 4 / 3)):
  """A random crop of `scale` of the area and `ratio` aspect, resized.

  torchvision's RandomResizedCrop: up to 10 draws, else the whole image.
  """
  h, w = image.shape[:2]
  for _ in range(10):
    area = h * w * rng.uniform(*scale)
    aspect = np.exp(rng.uniform(np.log(ratio[0]), np.log(ratio[1])))
    cw, ch = round(np.sqrt(area * aspect)), round(np.sqrt(area / aspect))
    if 0 < cw <= w and 0 < ch <= h:
      y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
      return resize(image[y:y + ch, x:x + cw], size, size)
  return resize(image, size, size)


def normalize(image, data_config):
  image = image.astype(np.float32) / 255.0
  if data_config.get('mean') is not None:
    image = (image - np.float32(data_config.mean)) / np.float32(data_config.std)
  return image


def train_transform(data_config):
  """The per-record training augmentation, a function of (example, rng)."""
  def transform(example, rng):
    if data_config.augment == 'resized_crop':
      image = random_resized_crop(example['image'], data_config.crop,
                                  data_config.crop_scale, rng)
    else:
      image = random_crop(example['image'], data_config.crop, rng)
    if data_config.flip and rng.random() < 0.5:
      image = image[:, ::-1]
    if data_config.cutout_holes:
      image = cutout(image, data_config.cutout_holes,
                     data_config.cutout_length, rng)
    return {'image': normalize(image, data_config),
            'label': np.int32(example['label'])}
  return transform


def eval_transform(data_config):
  crop = ten_crop if data_config.eval_crop == 'ten' else centre_crop
  def transform(example):
    image = example['image']
    if data_config.augment == 'resized_crop':  # test on the whole image
      image = resize(image, data_config.crop, data_config.crop)
    return {'image': normalize(crop(image, data_config.crop), data_config),
            'label': np.int32(example['label']), 'mask': np.bool_(True)}
  return transform


class _Subset:
  """The records of `source` at `indices`, as a random-access source."""

  def __init__(self, source, indices):
    self.source, self.indices = source, np.asarray(indices)

  def __len__(self):
    return len(self.indices)

  def __getitem__(self, i):
    return self.source[int(self.indices[i])]


def _fold_split(builder, split, data_config):
  """CK+'s 'train' or 'test' of config.data.fold under config.data.protocol."""
  if split not in ('train', 'test'):
    raise ValueError(f"split {split!r} of 'ckplus': expected 'train' or "
                     "'test' (of config.data.fold)")
  source = builder.as_data_source(split='images')
  records = [source[i] for i in range(len(source))]
  order = np.argsort([r['index'] for r in records])  # the protocol's order
  test = ckplus.test_indices(
      data_config.protocol, data_config.fold,
      [records[i]['label'] for i in order],
      [records[i]['subject'] for i in order])
  positions = (test if split == 'test'
               else np.setdiff1d(np.arange(len(order)), test))
  return grain.MapDataset.source(_Subset(source, order[positions]))


def train_split_source(builder, data_config):
  """The training split, minus the held-out slice when one is configured."""
  if builder.name == 'ckplus':
    return _fold_split(builder, data_config.train_split, data_config)
  source = grain.MapDataset.source(
      builder.as_data_source(split=data_config.train_split))
  return source[data_config.holdout:] if data_config.holdout else source


def eval_split_source(builder, split, data_config):
  """An eval split by name; 'holdout' is the head of the training split."""
  if builder.name == 'ckplus':
    return _fold_split(builder, split, data_config)
  if split == 'holdout':
    if not data_config.holdout:
      raise ValueError("eval split 'holdout' needs config.data.holdout > 0")
    return grain.MapDataset.source(
        builder.as_data_source(split=data_config.train_split))[
            :data_config.holdout]
  if split not in builder.info.splits:
    raise ValueError(f'eval split {split!r} not in dataset '
                     f'{builder.name!r}; it has {list(builder.info.splits)}')
  return grain.MapDataset.source(builder.as_data_source(split=split))


def _iter_dataset(ds, data_config):
  ds = ds.to_iter_dataset(grain.ReadOptions(
      num_threads=data_config.threads,
      prefetch_buffer_size=max(2, data_config.threads)))
  if data_config.workers:
    ds = ds.mp_prefetch(grain.MultiprocessingOptions(
        num_workers=data_config.workers))
  return ds


def train_dataset(source, data_config, global_batch, seed):
  """Endless training batches for this process, as a grain IterDataset."""
  ds = source[jax.process_index()::jax.process_count()]
  ds = ds.shuffle(seed=seed).random_map(train_transform(data_config),
                                        seed=seed + 1)
  ds = ds.repeat(None).batch(local_batch_size(global_batch),
                             drop_remainder=True)
  return _iter_dataset(ds, data_config)


def eval_dataset(source, data_config, global_batch):
  """This process's share of an eval split, each image once, padded + masked."""
  n = len(source)
  padded = -(-n // global_batch) * global_batch
  transform = eval_transform(data_config)
  padding = None

  def example(i):
    nonlocal padding
    if i < n:
      return transform(source[i])
    if padding is None:
      padding = jax.tree.map(np.zeros_like, transform(source[0]))
    return padding

  ds = grain.MapDataset.range(padded)[jax.process_index()::jax.process_count()]
  ds = ds.map(example).batch(local_batch_size(global_batch))
  return _iter_dataset(ds, data_config)


@dataclasses.dataclass
class Data:
  """A dataset ready for training: iterators and what the model must know."""
  train: grain.IterDataset  # endless, this process's batches
  evals: dict[str, grain.IterDataset]  # split name -> padded batches
  train_size: int  # examples per epoch, all processes together
  class_names: tuple[str, ...]
  input_shape: tuple[int, int, int]  # after cropping
  class_weights: np.ndarray | None  # per class, for the loss; None: uniform


def class_weights(source, num_classes, how):
  """Loss weights per class: 'none' (None) or 'inverse_frequency'.

  Inverse frequency, normalised so that the average image weighs 1:
  w_c = N / (K n_c); FER2013's disgust (436 of 28,709) then weighs 9.4.
  """
  if how == 'none':
    return None
  if how != 'inverse_frequency':
    raise ValueError(f"config.data.class_weights={how!r}: expected 'none' or "
                     "'inverse_frequency'")
  # Counted from the records (7 s for FER2013) since holdouts and folds make
  # the training set differ from the stored split.
  counts = np.bincount([int(source[i]['label']) for i in range(len(source))],
                       minlength=num_classes)
  if not counts.all():
    raise ValueError('config.data.class_weights=inverse_frequency: classes '
                     f'{np.flatnonzero(counts == 0).tolist()} have no '
                     'training images')
  return (counts.sum() / (len(counts) * counts)).astype(np.float32)


def load(data_config, global_batch, eval_batch, seed):
  builder = get_builder(data_config.name, data_config.data_dir)
  image_shape = builder.info.features['image'].shape
  if data_config.augment not in ('crop', 'resized_crop'):
    raise ValueError(f'config.data.augment={data_config.augment!r}: expected '
                     "'crop' or 'resized_crop'")
  if data_config.augment == 'crop' and data_config.crop > min(
      image_shape[:2]):
    raise ValueError(f'config.data.crop={data_config.crop}: larger than the '
                     f'{image_shape[:2]} images of {data_config.name!r}')
  train_source = train_split_source(builder, data_config)
  names = tuple(builder.info.features['label'].names)
  return Data(
      train=train_dataset(train_source, data_config, global_batch, seed),
      evals={split: eval_dataset(eval_split_source(builder, split, data_config),
                                 data_config, eval_batch)
             for split in data_config.eval_splits},
      train_size=len(train_source),
      class_names=names,
      input_shape=(data_config.crop, data_config.crop, image_shape[-1]),
      class_weights=class_weights(train_source, len(names),
                                  data_config.class_weights))
