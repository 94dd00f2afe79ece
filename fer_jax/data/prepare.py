"""Builds a hand-downloaded dataset once, as array_record files TFDS reads.

  python -m fer_jax.data.prepare --dataset=fer2013 --manual_dir=PATH \
      [--data_dir=PATH] [--skip_bad_images]

Prints the images per split and class. TFDS writes into an `incomplete.*`
folder and renames it when done, so an interrupted build is never read as
complete; a finished one is not rebuilt.
"""
import glob
import os
import shutil
import time

from absl import app
from absl import flags

from fer_jax import errors
from fer_jax import workdir
from fer_jax.data import pipeline

def prepare(dataset, manual_dir, data_dir=None, skip_bad_images=False):
  """Builds `dataset` from `manual_dir`; returns the prepared builder."""
  builder = pipeline.manual_builder(dataset, data_dir, skip_bad_images)
  if not builder.is_prepared():
    if hasattr(builder, 'layout'):  # checked here for a one-line error
      builder.layout(manual_dir)
    parent = os.path.dirname(builder.data_dir)
    with workdir.lock(parent, user='preparation of ' + dataset):
      # A preparation killed mid-write leaves TFDS's incomplete.* folder.
      for stale in glob.glob(os.path.join(
          parent, f'incomplete.*_{os.path.basename(builder.data_dir)}')):
        print(f'removing {stale}, left by an interrupted preparation')
        shutil.rmtree(stale)
      import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
      builder.download_and_prepare(
          download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
  return pipeline.get_builder(dataset, data_dir)


def summary(builder):
  """Lines: images per split and per class, and files skipped."""
  names = builder.info.features['label'].names
  counts = builder.info.metadata.get('class_counts', {})
  lines = [f'{builder.name} in {builder.data_dir}']
  for split, info in builder.info.splits.items():
    lines.append(f'  {split}: {info.num_examples} images')
    for name, count in zip(names, counts.get(split, ())):
      lines.append(f'    {name:10s} {count}')
  for split, count in builder.info.metadata.get('skipped', {}).items():
    if count:
      lines.append(f'  {split}: {count} bad images skipped')
  return lines


def main(argv):
  del argv
  start = time.perf_counter()
  f = flags.FLAGS
  builder = errors.report(prepare, f.dataset, f.manual_dir, f.data_dir,
                          f.skip_bad_images, verbose=f.verbosity >= 1)
  print('\n'.join(summary(builder)))
  print(f'ready in {time.perf_counter() - start:.0f} s')


if __name__ == '__main__':
  # Defined here, not at import: tests and tools import prepare().
  flags.DEFINE_string('dataset', None, 'fer2013, ckplus or rafdb.',
                      required=True)
  flags.DEFINE_string('manual_dir', None, 'The folder holding the download.',
                      required=True)
  flags.DEFINE_string('data_dir', None,
                      'Where to write; default the TFDS default.')
  flags.DEFINE_bool(
      'skip_bad_images', False,
      'Leave out unreadable or wrongly sized images (and count them) instead '
      'of stopping at the first.')
  app.run(main)
