"""Which records a run reads as each split: the builders' `split_source`.

The pipeline asks the builder for a split by name; the builder knows its own
protocol, and says which stored records it is (`split_indices`: the
stylised copies of `fer_jax.data.stylize` come only from those a run trains
on). `StoredSplits` (FER2013, RAF-DB, fer_synth) serves the stored
splits, with `config.data.holdout` taking the first N images of the training
split out of training and into the eval split 'holdout'. CK+ overrides it
with its folds (`fer_jax/data/ckplus.py`).
"""
import grain
import numpy as np

from fer_jax import errors


class Subset:
  """The records of `source` at `indices`, as a random-access source."""

  def __init__(self, source, indices):
    self.source, self.indices = source, np.asarray(indices)

  def __len__(self):
    return len(self.indices)

  def __getitem__(self, i):
    return self.source[int(self.indices[i])]


class StoredSplits:
  """`split_source` for builders whose splits are stored as such."""

  def split_indices(self, split, data_config):
    """(stored split, indices into it) of the records a run reads as `split`.

    'holdout' is the first `data_config.holdout` images of the training
    split, which then trains on the rest.
    """
    holdout = data_config.holdout
    train = data_config.train_split
    if split == 'holdout' and not holdout:
      raise errors.UserError(
          "eval split 'holdout' needs config.data.holdout > 0")
    stored = train if split == 'holdout' else split
    if stored not in self.info.splits:
      raise errors.UserError(
          f'split {stored!r} not in dataset {self.name!r}; it has '
          f'{list(self.info.splits)}')
    size = self.info.splits[stored].num_examples
    if holdout and holdout >= size and stored == train:
      raise errors.UserError(
          f'config.data.holdout={holdout}: leaves none of the {size} '
          f'{train!r} images of {self.name!r} to train on')
    if split == 'holdout':
      return stored, np.arange(holdout)
    if split == train and holdout:
      return stored, np.arange(holdout, size)
    return stored, np.arange(size)

  def split_source(self, split, data_config):
    """The records a run reads as `split`, as a grain MapDataset."""
    stored, indices = self.split_indices(split, data_config)
    source = self.as_data_source(split=stored)
    if len(indices) == len(source):
      return grain.MapDataset.source(source)
    return grain.MapDataset.source(Subset(source, indices))
