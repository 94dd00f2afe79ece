"""The model that ships with the package: one file with its config, class
names, stored image shape and weights (flax's msgpack).

  python -m fer_jax.pretrained --workdir=runs/vgg19_fer2013_cpu \
      [--checkpoint=selected] [--output=fer_jax/pretrained/fer2013.msgpack]

exports a run's checkpoint into that file (written to a temporary name,
then renamed); `load()` reads it back for `fer_jax.predict.Predictor`.

  python -m fer_jax.pretrained --evaluate [--data_dir=DIR]

measures the file itself on the prepared FER2013 (PublicTest, PrivateTest),
through the same `Predictor` that serves photos.
Which run made the shipped file, and its measured accuracy, is in the
README and in its config (`configs/vgg19_fer2013_cpu.py`).
"""
import json
import os

from absl import app
from absl import flags
import flax.serialization
import jax
import ml_collections
import numpy as np

from fer_jax import errors
from fer_jax import files

PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'pretrained',
                    'fer2013.msgpack')


def export(workdir, output=PATH, checkpoint_step='selected'):
  """Writes the run's checkpoint to `output`; returns the step exported."""
  from fer_jax import predict  # pylint: disable=g-import-not-at-top
  predictor = predict.Predictor.from_workdir(workdir, checkpoint_step)
  record = {
      'config': json.dumps(predictor.config.to_dict()),
      'class_names': list(predictor.class_names),
      'image_shape': list(predictor.image_shape),
      'variables': jax.tree.map(np.asarray, predictor.variables),
  }
  files.write(output, flax.serialization.msgpack_serialize(record))


def load(path=PATH):
  """(config, class names, image shape, variables) from an exported file."""
  if not os.path.isfile(path):
    raise errors.MissingError(
        f'{path}: missing; the shipped model comes with the repository '
        '(or export one with python -m fer_jax.pretrained --workdir=RUN)')
  try:
    with open(path, 'rb') as f:
      record = flax.serialization.msgpack_restore(f.read())
    config = ml_collections.ConfigDict(json.loads(record['config']))
    return (config, record['class_names'], record['image_shape'],
            record['variables'])
  except (ValueError, KeyError, TypeError) as e:
    raise errors.UserError(f'{path}: not an exported fer_jax model '
                           f'({type(e).__name__}: {e})') from None


def evaluate(path=PATH, data_dir=None, splits=('validation', 'test')):
  """{split: ten-crop accuracy} of an exported file on its prepared dataset
  (FER2013 for the shipped one), through `Predictor` as photos go."""
  from fer_jax import predict  # pylint: disable=g-import-not-at-top
  from fer_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  predictor = predict.Predictor(*load(path))
  builder = pipeline.get_builder(predictor.config.data.name, data_dir)
  accuracies = {}
  for split in splits:
    source = builder.as_data_source(split=split)
    correct = 0
    for start in range(0, len(source), 256):
      records = [source[i] for i in range(start, min(start + 256,
                                                     len(source)))]
      probabilities = predictor.probabilities([r['image'] for r in records])
      correct += int(np.sum(np.argmax(probabilities, -1)
                            == [r['label'] for r in records]))
    accuracies[split] = correct / len(source)
  return accuracies


def main(argv):
  del argv
  f = flags.FLAGS
  if f.evaluate:
    accuracies = errors.report(evaluate, f.output, f.data_dir,
                               verbose=f.verbosity >= 1)
    for split, accuracy in accuracies.items():
      print(f'{f.output} on {split}: ten-crop accuracy {accuracy:.2%}')
    return
  if not f.workdir:
    raise app.UsageError('--workdir is required')
  errors.report(export, f.workdir, f.output, f.checkpoint,
                verbose=f.verbosity >= 1)
  print(f'{f.output}: {os.path.getsize(f.output) / 1e6:.1f} MB')


if __name__ == '__main__':
  # Defined here, not at import: fer_jax.predict imports this module.
  flags.DEFINE_string('workdir', None, 'The run to export.')
  flags.DEFINE_string('checkpoint', 'selected',
                      "'selected', 'latest' or a step.")
  flags.DEFINE_string('output', PATH, 'The file to write (or evaluate).')
  flags.DEFINE_bool('evaluate', False, 'Instead: the accuracy of --output on '
                    'its prepared dataset.')
  flags.DEFINE_string('data_dir', None, 'TFDS data_dir for --evaluate.')
  app.run(main)
