"""Exports a trained model to one file: `python -m fer_jax.export`.

  python -m fer_jax.export --workdir=runs/uvgg_fer2013_cpu \
      [--checkpoint=selected] --output=fer_jax/pretrained/fer2013.msgpack
  python -m fer_jax.export --pretrained --output=fer2013.onnx [--crops=ten]

`--format` (else the output's extension) picks the kind:
- msgpack: the run's config, class names, stored image shape, variables
  and post-hoc logit adjustment (`weights.export_record`), the file every
  loader here reads back (`weights.load`); the shipped model is one.
- onnx: the model as an ONNX graph for other runtimes (onnxruntime, C++,
  the browser), from the image as the dataset stores it to probabilities:
  input `image`, uint8 (batch, H, W, C), any batch; output
  `probabilities`, float32 (batch, classes). The graph holds the scaling to
  [0, 1], the config's normalisation, the crops (`ten`: the four corners,
  the centre and their mirrors, logits averaged, as evaluation does;
  `centre`: one crop, 10x less work) and the logit adjustment; what comes
  before it, Pillow's conversion and resize, is in the file's metadata
  (`metadata`), with the class names. It is the plain XLA computation
  (`fer_jax.onnx_graph`), not the CPU formulations.
Written to a temporary name, then renamed (`files.write`).
`tests/test_export.py` checks that onnxruntime gives the JAX model's
probabilities (`Predictor`) to 1e-4, for the shipped model and runs of each
model family.
"""
import functools
import json
import os

from absl import app
from absl import flags
from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from fer_jax import errors
from fer_jax import files
from fer_jax import models
from fer_jax import onnx_graph
from fer_jax import predict
from fer_jax import steps
from fer_jax import weights
from fer_jax.data import transforms

FORMATS = ('msgpack', 'onnx')
CROPS = ('ten', 'centre')


def input_shape(w):
  """(H, W, C) of the ONNX graph's images: the stored size, or the crop
  size when evaluation resizes first (`augment='resized_crop'`)."""
  c = w.config.data
  if c.augment == 'resized_crop':
    return (c.crop, c.crop, w.image_shape[2])
  return tuple(w.image_shape)


def onnx_images(faces, config, image_shape):
  """uint8 (faces, H, W, C): RGB or grey face crops of any size as the
  ONNX graph of a run with `config` and stored `image_shape` takes them;
  the metadata's 'preprocessing', in code (`Predictor`'s own steps)."""
  images = [predict.to_dataset_image(f, image_shape) for f in faces]
  if config.data.augment == 'resized_crop':
    images = [transforms.resize(i, config.data.crop, config.data.crop)
              for i in images]
  return np.stack(images)


def probabilities_function(w, crops):
  """The JAX function the ONNX graph is written from: uint8 (batch, H, W,
  C) images of `input_shape(w)` -> float32 (batch, classes), as
  `transforms.eval_transform` and `Predictor` compute it."""
  c = w.config.data
  model = models.create(w.config.model, w.num_classes)
  shift = (np.zeros(w.num_classes, np.float32) if w.logit_shift is None
           else np.asarray(w.logit_shift, np.float32))
  height, width, _ = input_shape(w)
  offsets = transforms.crop_offsets(height, width, c.crop)
  offsets = offsets if crops == 'ten' else offsets[-1:]

  def probabilities(images):
    x = images.astype(jnp.float32) / 255.0
    if c.get('mean') is not None:
      x = (x - np.float32(c.mean)) / np.float32(c.std)
    # lax.slice, not indexing, which would trace to a gather with the
    # graph's symbolic batch size.
    views = [jax.lax.slice(x, (0, y, x0, 0), (x.shape[0], y + c.crop,
                                              x0 + c.crop, x.shape[3]))
             for y, x0 in offsets]
    if crops == 'ten':
      views += [jax.lax.rev(v, (2,)) for v in views]  # mirrored
    logits = steps.crop_averaged_logits(w.variables, jnp.stack(views, 1),
                                        model=model)
    return jax.nn.softmax(logits + shift)
  return probabilities


def metadata(w, crops, source):
  """The ONNX file's metadata_props: what a user of the file needs to feed
  it as fer_jax does, and where it came from."""
  c = w.config.data
  h, width, channels = input_shape(w)
  mode = {1: 'L', 3: 'RGB'}[channels]
  stored = w.image_shape
  steps_before = [
      f"crop the face; Pillow: Image.fromarray(face).convert('{mode}')",
      f'.resize(({stored[1]}, {stored[0]}), Image.BILINEAR) unless it is '
      'that size already']
  if c.augment == 'resized_crop':
    steps_before.append(f'then .resize(({width}, {h}), Image.BILINEAR)')
  steps_before.append(f'np.asarray(image, np.uint8).reshape({h}, {width}, '
                      f'{channels}); stack faces on a first axis')
  normalisation = 'x / 255'
  if c.get('mean') is not None:
    normalisation += f' then (x - {list(c.mean)}) / {list(c.std)}'
  return {
      'class_names': json.dumps(list(w.class_names)),
      'input': f'image: uint8 (batch, {h}, {width}, {channels}), NHWC, '
               f'{"grey" if channels == 1 else "RGB"} 0-255',
      'output': 'probabilities: float32 (batch, classes), in the order of '
                'class_names',
      'preprocessing': '; '.join(steps_before),
      'normalisation': normalisation + ' (inside the graph)',
      'crops': (f'ten {c.crop}x{c.crop} crops (four corners, centre, their '
                'mirrors), logits averaged' if crops == 'ten' else
                f'the centre {c.crop}x{c.crop} crop'),
      'logit_adjustment_tau': f'{w.tau:g}' if w.logit_shift is not None
                              else 'none',
      'model': json.dumps(w.model),
      'source': f'{source}: {w.what}',
  }


def onnx_model(w, crops='ten', source=''):
  """The `onnx.ModelProto` of a training run's `Weights` (see the module
  doc); `source` names it in the metadata."""
  if crops not in CROPS:
    raise errors.UserError(f'--crops={crops!r}: expected one of {CROPS}')
  return onnx_graph.to_onnx(
      probabilities_function(w, crops),
      jax.ShapeDtypeStruct((1, *input_shape(w)), jnp.uint8),
      'image', 'probabilities', metadata=metadata(w, crops, source),
      doc='fer_jax facial expression model; see metadata_props')


def export(path, output, checkpoint_step='selected', fmt=None, crops=None):
  """Writes the model at `path` (a run's workdir or an exported file) to
  `output` in `fmt` (by default its extension's); returns `output`.
  `crops`: the ONNX graph's, by default the config's `eval_crop`."""
  fmt = fmt or ('onnx' if output.endswith('.onnx') else 'msgpack')
  if fmt not in FORMATS:
    raise errors.UserError(f'--format={fmt!r}: expected one of {FORMATS}')
  w = weights.load(path, checkpoint_step, key='--workdir')
  if w.config is None:
    raise errors.UserError(
        f'--workdir={path}: converted weights carry no preprocessing to '
        'export; train from them (--config.model.init_from) and export the '
        'run')
  if fmt == 'msgpack':
    return files.write(output, weights.export_record(w))
  crops = crops or ('ten' if w.config.data.eval_crop == 'ten' else 'centre')
  model = onnx_model(w, crops, os.path.basename(os.path.normpath(path)))
  return files.write(output, model.SerializeToString())


def main(argv):
  del argv
  f = flags.FLAGS
  logging.set_verbosity(logging.WARNING)  # JAX's backend notes are INFO
  if bool(f.workdir) == f.pretrained:
    raise SystemExit('error: give one of --workdir=RUN and --pretrained')
  if not f.output:
    raise SystemExit('error: --output=FILE is required')
  path = weights.SHIPPED if f.pretrained else f.workdir
  errors.report(export, path, f.output, f.checkpoint, f.format, f.crops,
                verbose=f.verbosity >= 1)
  print(f'{f.output}: {os.path.getsize(f.output) / 1e6:.1f} MB')


if __name__ == '__main__':
  # Defined here, not at import, so that other tools can import this one.
  flags.DEFINE_string('workdir', None, 'The run to export (its workdir, or '
                      'an exported .msgpack file).')
  flags.DEFINE_bool('pretrained', False, 'Export the model that ships with '
                    'the package instead.')
  flags.DEFINE_string('checkpoint', 'selected',
                      "With --workdir: 'selected', 'latest' or a step.")
  flags.DEFINE_string('output', None, 'The file to write.')
  flags.DEFINE_enum('format', None, FORMATS, 'By default the extension of '
                    '--output (.onnx: onnx, else msgpack).')
  flags.DEFINE_enum('crops', None, CROPS, 'ONNX only: the crops averaged '
                    "in the graph; by default the config's eval_crop.")
  app.run(main, flags_parser=functools.partial(errors.parse_flags,
                                               program='export'))
