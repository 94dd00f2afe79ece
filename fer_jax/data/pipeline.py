"""Input pipelines on grain: TFDS array_record sources to host batches.

Training: per-process shard -> seeded shuffle (reseeded each epoch by grain)
-> per-record augmentation with the record's own RNG -> endless repeat ->
batches of `global_batch / process_count`. Evaluation: every image exactly
once, padded to whole global batches with a `mask` that is 0 on the padding.
"""
import dataclasses

from absl import logging
import grain
import jax
import numpy as np

from fer_jax import config_check
from fer_jax import errors
from fer_jax.data import ckplus
from fer_jax.data import fer2013
from fer_jax.data import fer_synth
from fer_jax.data import rafdb
from fer_jax.data import stylized_dataset
from fer_jax.data import transforms

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
    raise errors.UserError(
        f'config.data.name={name!r}: no builder for this dataset in this '
        f'version of fer_jax; available: {sorted(BUILDERS)}')
  names = [c.name for c in BUILDERS[dataset].BUILDER_CONFIGS]
  if builder_config and builder_config not in names:
    raise errors.UserError(
        f'config.data.name={name!r}: {dataset!r} has the '
        f'configurations {names}')
  return BUILDERS[dataset](config=builder_config or None,
                           data_dir=data_dir or None,
                           file_format='array_record', **kwargs)


def manual_builder(name, data_dir=None, skip_bad_images=False):
  """The builder `prepare` runs: with the bad-image policy if it reads files."""
  if name.partition('/')[0] in EMBEDDED:
    return _builder(name, data_dir)
  return _builder(name, data_dir, skip_bad_images=skip_bad_images)


def _is_prepared(builder):
  # TFDS warns when an unprepared dataset's folder has no dataset_info.json;
  # get_builder says what to do about it instead.
  verbosity = logging.get_verbosity()
  logging.set_verbosity(logging.ERROR)
  try:
    return builder.is_prepared()
  finally:
    logging.set_verbosity(verbosity)


def get_builder(name, data_dir=None):
  """The prepared TFDS builder of dataset `name`, building fer_synth if needed."""
  builder = _builder(name, data_dir)
  if not _is_prepared(builder):
    if builder.name not in EMBEDDED:
      raise errors.MissingError(
          f'prepared data for {name!r} not found in {builder.data_dir}: run '
          f'python -m fer_jax.data.prepare --dataset={name} --manual_dir=PATH')
    # TFDS writes into an `incomplete.*` folder and renames it when done, so
    # an interrupted build is never read as complete.
    if jax.process_index() == 0:
      builder.download_and_prepare()
    sync_processes('build ' + name)
    builder = _builder(name, data_dir)
  return builder


def sync_processes(name):
  """Waits for every process to get here (a no-op for one process)."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    multihost_utils.sync_global_devices(name)


def local_batch_size(global_batch):
  if global_batch % jax.process_count():
    raise errors.UserError(
        f'batch size {global_batch} does not divide by the '
        f'process count {jax.process_count()}')
  return global_batch // jax.process_count()


def _iter_dataset(ds, data_config):
  ds = ds.to_iter_dataset(grain.ReadOptions(
      num_threads=data_config.threads,
      prefetch_buffer_size=max(2, data_config.threads)))
  if data_config.workers:
    ds = ds.mp_prefetch(grain.MultiprocessingOptions(
        num_workers=data_config.workers))
  return ds


def train_dataset(source, data_config, global_batch, seed):
  """Endless training batches for this process, as a grain IterDataset.

  Every process walks the same shuffled, augmented stream, cut into local
  batches, and takes every process_count-th of them from its index on, so
  that a global batch (the processes' local batches in process order, as
  `jax.make_array_from_process_local_data` joins them) holds the same images
  with the same augmentation whatever the process count: 2 processes x 2
  devices train exactly as 1 x 4 (tests/test_multihost.py). Grain evaluates
  lazily, so each process reads and augments only its own batches.
  """
  ds = source.shuffle(seed=seed).random_map(
      transforms.train_transform(data_config), seed=seed + 1)
  ds = ds.repeat(None).batch(local_batch_size(global_batch),
                             drop_remainder=True)
  return _iter_dataset(ds[jax.process_index()::jax.process_count()],
                       data_config)


def eval_dataset(source, data_config, global_batch):
  """This process's share of an eval split, each image once, padded + masked:
  as in training, a global batch is the same images for any process count.
  """
  n = len(source)
  padded = -(-n // global_batch) * global_batch
  transform = transforms.eval_transform(data_config)
  padding = None

  def example(i):
    nonlocal padding
    if i < n:  # the index in the split, for per-image predictions
      return dict(transform(source[i]), index=np.int32(i))
    if padding is None:
      padding = jax.tree.map(np.zeros_like, example(0))
    return padding

  ds = grain.MapDataset.range(padded).map(example).batch(
      local_batch_size(global_batch))
  return _iter_dataset(ds[jax.process_index()::jax.process_count()],
                       data_config)


@dataclasses.dataclass
class Data:
  """A dataset ready for training: iterators and what the model must know."""
  train: grain.IterDataset  # endless, this process's batches
  evals: dict[str, grain.IterDataset]  # split name -> padded batches
  eval_sources: dict  # split name -> its records, indexable
  train_size: int  # examples per epoch, all processes together
  class_names: tuple[str, ...]
  image_shape: tuple[int, int, int]  # as stored
  input_shape: tuple[int, int, int]  # after cropping
  class_weights: np.ndarray | None  # per class, for the loss; None: uniform
  class_counts: np.ndarray | None  # training images per class, if counted
  train_note: str | None = None  # what the training set mixes, for the log


def class_counts(source, num_classes):
  """Training images per class. Counted from the records, since holdouts,
  folds and stylised copies make the training set differ from the stored
  split; a class without images is refused (no prior, no weight)."""
  counts = np.bincount([int(source[i]['label']) for i in range(len(source))],
                       minlength=num_classes)
  if not counts.all():
    raise errors.UserError(
        f'classes {np.flatnonzero(counts == 0).tolist()} have no training '
        'images: config.data.class_weights and config.loss.logit_adjustment '
        'need every class')
  return counts


def class_weights(counts, how):
  """Loss weights per class: 'none' (None) or 'inverse_frequency'.

  Inverse frequency, normalised so that the average image weighs 1:
  w_c = N / (K n_c); FER2013's disgust (436 of 28,709) then weighs 9.4.
  """
  if how == 'none':
    return None
  return (counts.sum() / (len(counts) * counts)).astype(np.float32)


def mix_extra_train(train_source, data_config, features):
  """(training source with config.data.extra_train's stylised datasets
  concatenated, a line of per-class counts), checked against `features`."""
  names = list(features['label'].names)
  shape = tuple(features['image'].shape)
  counts = np.bincount([int(train_source[i]['label'])
                        for i in range(len(train_source))],
                       minlength=len(names))
  sources, added = [train_source], np.zeros(len(names), int)
  for name in data_config.extra_train:
    builder = stylized_dataset.load(name, data_config)
    theirs = builder.info.features
    if (list(theirs['label'].names) != names
        or tuple(theirs['image'].shape) != shape):
      raise errors.UserError(
          f'config.data.extra_train: {name!r} has classes '
          f"{list(theirs['label'].names)} and {theirs['image'].shape} "
          f'images; the training data {names} and {shape}')
    source = grain.MapDataset.source(builder.as_data_source(split='train'))
    added += np.bincount([int(source[i]['label']) for i in range(len(source))],
                         minlength=len(names))
    sources.append(source)
  mixed = grain.MapDataset.concatenate(sources)
  per_class = ', '.join(f'{n} {c + a}' + (f' (+{a})' if a else '')
                        for n, c, a in zip(names, counts, added))
  note = (f'Training on {len(mixed):,} images: {len(train_source):,} of '
          f'{data_config.name} {data_config.train_split} and '
          f'{int(added.sum()):,} stylised ({", ".join(data_config.extra_train)}'
          f'); an epoch is the mixed set. Per class: {per_class}.')
  return mixed, note


def load(data_config, global_batch, eval_batch, seed, extra_train=True,
         count_classes=False):
  """Data for a run; `extra_train` False leaves config.data.extra_train's
  stylised copies out of the training set. The training set's classes are
  counted for class weights, or when `count_classes`."""
  builder = get_builder(data_config.name, data_config.data_dir)
  image_shape = builder.info.features['image'].shape
  config_check.check_data(data_config, image_shape)
  train_source = builder.split_source(data_config.train_split, data_config)
  note = None
  if extra_train and data_config.get('extra_train'):
    train_source, note = mix_extra_train(train_source, data_config,
                                         builder.info.features)
  names = tuple(builder.info.features['label'].names)
  eval_sources = {split: builder.split_source(split, data_config)
                  for split in data_config.eval_splits}
  for split, source in eval_sources.items():
    if not len(source):  # pylint: disable=g-explicit-length-test
      raise errors.UserError(
          f'config.data.eval_splits: {split!r} of {data_config.name!r} has '
          'no images under this config (its fold, protocol or holdout); '
          'leave it out or choose a split that has some')
  counts = None
  if count_classes or data_config.class_weights != 'none':
    counts = class_counts(train_source, len(names))
  return Data(
      train=train_dataset(train_source, data_config, global_batch, seed),
      evals={split: eval_dataset(source, data_config, eval_batch)
             for split, source in eval_sources.items()},
      eval_sources=eval_sources,
      train_size=len(train_source),
      class_names=names,
      image_shape=tuple(image_shape),
      input_shape=(data_config.crop, data_config.crop, image_shape[-1]),
      class_weights=(None if counts is None else
                     class_weights(counts, data_config.class_weights)),
      class_counts=counts,
      train_note=note)
