"""Emotions of the faces in photos, folders and videos.

  python -m fer_jax.predict photo.jpg                 # the model that ships
  python -m fer_jax.predict photos/ clip.mp4 --json --out=annotated/
  python -m fer_jax.predict face.png --no_detect --workdir=runs/demo \
      --checkpoint=latest

Each input is an image (JPEG, PNG, BMP, TIFF, WebP; EXIF orientation
honoured), a folder (searched recursively) or a video (every
`--video_stride`-th frame, with its time; each face tracked, its
probabilities smoothed over `--smooth` s, and a summary per track:
`fer_jax.video`, `fer_jax.tracks`). Faces are found with OpenCV's Haar
cascade (`fer_jax.faces`), or with `--no_detect` each input is taken as one
face. A face reaches the model exactly as images reach it in evaluation: in
the dataset's stored format (`to_dataset_image`: Pillow's grayscale or RGB,
resized to the stored size), then `transforms.eval_transform` (the ten crops,
or resize and centre crop, and the normalisation of the run's config), then
`steps.crop_averaged_logits`. `tests/test_predict.py` checks that
`--no_detect` on FER2013-format files gives `--mode=eval`'s per-image
probabilities.

Output: with `--json` one JSON object per image or video frame on stdout,
`{"path", ["frame", "time",] "faces": [{"box": [x, y, w, h],
"probabilities": {class: p}, "label": class[, "track": id, "smoothed":
{class: p}, "smoothed_label": class]}]}`, after a video's frames one
`{"path", "type": "track", "track", "first", "last", "frames",
"mean_probabilities", "label"}` per track, or `{"path", "error"}`; text
otherwise. `--out=DIR` writes annotated copies (and videos), mirroring
the inputs (`fer_jax.predict_files`). An input that fails (unreadable, not a
regular file) is reported and skipped, and the exit status is then 1; a
mistake that concerns every input (nothing found, outputs that would
collide, a bad flag) is one line on stderr before anything is predicted.
"""
import functools
import json
import os
import sys

from absl import app
from absl import flags
from absl import logging
import jax
import numpy as np
from PIL import Image
import tqdm

from fer_jax import annotate
from fer_jax import errors
from fer_jax import faces
from fer_jax import image_files
from fer_jax import models
from fer_jax import predict_files
from fer_jax import steps
from fer_jax import timeline
from fer_jax import tracks
from fer_jax import video
from fer_jax import weights
from fer_jax.data import transforms
from fer_jax.models import cpu_conv

# Faces go through the model in calls of these sizes, so that it compiles
# once per size, not once per face count.
BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64)


def to_dataset_image(image, shape):
  """An RGB or grayscale uint8 image as the dataset stores its images:
  converted by Pillow (as the builders decode files) and resized to
  (H, W) of `shape` if it is not that size already."""
  mode = {1: 'L', 3: 'RGB'}[shape[2]]
  if image.ndim == 3 and image.shape[2] == 1:  # as datasets store grey
    image = image[..., 0]
  picture = Image.fromarray(image).convert(mode)
  if picture.size != (shape[1], shape[0]):
    picture = picture.resize((shape[1], shape[0]), Image.BILINEAR)
  return np.asarray(picture, np.uint8).reshape(shape)


def read_image(path):
  """The image at `path` as RGB uint8, EXIF orientation applied; decoded
  by the rules of `fer_jax.image_files` (16-bit scaled, regular files)."""
  return image_files.read(path, 'RGB', exif=True)


class Predictor:
  """A trained model with its config's preprocessing; see the module doc."""

  def __init__(self, config, class_names, image_shape, variables,
               logit_shift=None):
    """`logit_shift`: added to the logits (a post-hoc logit adjustment,
    `fer_jax.logit_adjustment`), None for none."""
    self.config = config
    self.class_names = tuple(class_names)
    self.image_shape = tuple(image_shape)
    self.variables = jax.device_put(variables)
    self.logit_shift = jax.device_put(
        np.zeros(len(class_names), np.float32) if logit_shift is None
        else np.asarray(logit_shift, np.float32))
    self.transform = transforms.eval_transform(config.data)
    model = models.create(config.model, len(class_names))
    self._probabilities = jax.jit(
        lambda v, shift, x: jax.nn.softmax(
            steps.crop_averaged_logits(v, x, model=model) + shift),
        compiler_options=cpu_conv.compiler_options())

  @classmethod
  def load(cls, path=weights.SHIPPED, checkpoint_step='selected'):
    """The model at `path` (`weights.load`: a run's workdir at its selected,
    'latest' or numbered checkpoint, or an exported file); by default the
    FER2013 model that ships with the package."""
    w = weights.load(path, checkpoint_step, key='model path')
    if w.config is None:
      raise errors.UserError(
          f'{path}: converted weights carry no preprocessing to predict '
          'with; train from them (--config.model.init_from) or export a run')
    predictor = cls(w.config, w.class_names, w.image_shape, w.variables,
                    w.logit_shift)
    predictor.step = w.step  # which checkpoint it is, for the log
    return predictor

  @classmethod
  def pretrained(cls):
    """The FER2013 model that ships with the package (`fer_jax.export` wrote it)."""
    return cls.load(weights.SHIPPED)

  def probabilities(self, face_images):
    """(faces, classes) probabilities of uint8 face crops (RGB or grey, any
    size), computed in batches of `BATCH_SIZES`."""
    if not len(face_images):  # pylint: disable=g-explicit-length-test
      return np.zeros((0, len(self.class_names)), np.float32)
    inputs = np.stack([
        self.transform({'image': to_dataset_image(f, self.image_shape),
                        'label': 0})['image'] for f in face_images])
    out, start = [], 0
    while start < len(inputs):
      # The largest size that the faces left fill: no padding (17 faces are
      # 16 + 1, not 64 with 47 blank; powers of two make any count one
      # call per bit).
      size = max(s for s in BATCH_SIZES if s <= len(inputs) - start)
      out.append(np.asarray(self._probabilities(
          self.variables, self.logit_shift, inputs[start:start + size])))
      start += size
    return np.concatenate(out)

  def predict(self, images, detect=True):
    """For each RGB uint8 image, its faces: [{'box', 'probabilities',
    'label'}]; without `detect` the whole image is one face. The faces of
    all images go through the model together."""
    return self.faces(images, [
        faces.detect(image) if detect else
        [(0, 0, image.shape[1], image.shape[0])] for image in images])

  def faces(self, images, boxes):
    """`predict` for faces already found: `boxes[i]` the (x, y, w, h) boxes
    of `images[i]`."""
    crops = [image[y:y + h, x:x + w]
             for image, found in zip(images, boxes) for x, y, w, h in found]
    probabilities = iter(self.probabilities(crops))
    results = []
    for found in boxes:
      results.append([])
      for box in found:
        p = next(probabilities)
        results[-1].append({
            'box': [int(v) for v in box],
            'probabilities': {name: float(v)
                              for name, v in zip(self.class_names, p)},
            'label': self.class_names[int(np.argmax(p))]})
    return results


def describe(record):
  """One human-readable line for an output record."""
  if record.get('type') == 'track':
    return (f"{record['path']}: track {record['track']}, "
            f"{record['first']:.2f}-{record['last']:.2f} s, "
            f"{record['frames']} frames: {record['label']} (mean "
            f"{record['mean_probabilities'][record['label']]:.2f})")
  where = record['path'] + (f" frame {record['frame']} ({record['time']:.2f}"
                            ' s)' if 'frame' in record else '')
  if 'error' in record:
    return f"{where}: error: {record['error']}"
  if not record['faces']:
    return f'{where}: no face found'
  parts = []
  for face in record['faces']:
    ranked = sorted(face['probabilities'].items(), key=lambda kv: -kv[1])
    who = f"track {face['track']} " if 'track' in face else ''
    parts.append(f"{who}face at {tuple(face['box'])}: " + ', '.join(
        f'{name} {p:.2f}' for name, p in ranked[:3]))
  return f'{where}: ' + '; '.join(parts)


def _run_image(predictor, path, detect, target):
  image = read_image(path)
  record = {'path': path, 'faces': predictor.predict([image], detect)[0]}
  if target:
    os.makedirs(os.path.dirname(target), exist_ok=True)
    annotate.save(annotate.draw(image, record['faces']), target)
  return [record]


def _run_video(predictor, path, detect, target, options, bar):
  """Yields each strided frame's record as it is predicted
  (`fer_jax.video`), then one record per track; with `target`, writes the
  annotated video and its timelines."""
  fps, count, frames = video.open_video(path, options)
  bar.total += -(-count // options.stride)
  tracker = tracks.Tracker(options.track_gap, options.smooth)
  writer, records = None, []
  try:
    for index, time, frame, found in video.predicted_frames(
        predictor, frames, detect, tracker, options.frames_per_call):
      bar.update()
      if target:
        if writer is None:
          os.makedirs(os.path.dirname(target), exist_ok=True)
          writer = annotate.VideoWriter(target, fps / options.stride,
                                        frame.shape)
        writer.write(annotate.draw(frame, found, extend=False))
      record = {'path': path, 'frame': index, 'time': round(time, 3),
                'faces': found}
      if target:  # the timelines are drawn from them at the end
        records.append(record)
      yield record
  finally:
    if writer:
      writer.close()
  if target:
    csv_path, png_path = predict_files.timeline_paths(target)
    timeline.write_csv(csv_path, records, predictor.class_names)
    timeline.write_png(png_path, records, predictor.class_names,
                       os.path.basename(path))
  for track in tracker.tracks():
    yield {'path': path, **track.summary(predictor.class_names)}


def plan(inputs, out=None, options=video.Options()):
  """(files of the input arguments with their output paths relative to
  `out`, where each file's annotated copy goes or None); a UserError before
  anything is predicted or written if no file is found, if `options` are not
  valid, or if `out` cannot take every annotated copy
  (`predict_files.outputs`)."""
  options.check()
  found = predict_files.expand(inputs)
  if not found:
    raise errors.UserError(f'no images or videos found in {", ".join(inputs)}')
  return found, (predict_files.outputs(found, out) if out
                 else [None] * len(found))


def run(predictor, inputs, detect=True, out=None, options=video.Options()):
  """Yields an output record per image, video frame or video track, or per
  failure; `options` say how videos are read (`video.Options`)."""
  found, targets = plan(inputs, out, options)
  return _records(predictor, found, targets, detect, options)


def _records(predictor, found, targets, detect, options):
  # Over files and video frames (an image counts as one frame): a video
  # adds its frames when it starts.
  videos = any(predict_files.is_video(path) for path, _ in found)
  with tqdm.tqdm(total=len(found), unit='frame', file=sys.stderr,
                 disable=len(found) < 2 and not videos) as bar:
    for (path, _), target in zip(found, targets):
      try:
        image_files.check_regular(path)
        if predict_files.is_video(path):
          yield from _run_video(predictor, path, detect, target, options,
                                bar)
        else:
          yield from _run_image(predictor, path, detect, target)
      except errors.UserError as e:
        yield {'path': path, 'error': str(e)}
      bar.update()


def main(argv):
  inputs = argv[1:]
  if not inputs:
    raise app.UsageError('give one or more images, folders or videos')

  f = flags.FLAGS
  logging.set_verbosity(logging.WARNING)  # JAX's backend notes are INFO
  verbose = f.verbosity >= 1
  if f['checkpoint'].present and not f.workdir:
    raise SystemExit('error: --checkpoint picks a checkpoint of --workdir; '
                     'give --workdir=RUN too (the shipped model has one)')
  options = video.Options(f.video_stride, f.track_gap, f.smooth)
  found, targets = errors.report(plan, inputs, f.out, options,
                                 verbose=verbose)
  predictor = errors.report(Predictor.load, f.workdir or weights.SHIPPED,
                            f.checkpoint, verbose=verbose)
  failed = False
  for record in _records(predictor, found, targets, not f.no_detect,
                         options):
    failed |= 'error' in record
    print(json.dumps(record) if f.json else describe(record), flush=True)
  sys.exit(1 if failed else 0)


if __name__ == '__main__':
  # Defined here, not at import: the Predictor is imported by other tools.
  flags.DEFINE_string('workdir', None, 'A training run (or an exported '
                      '.msgpack) to predict with; default: the model that '
                      'ships with fer_jax.')
  flags.DEFINE_string('checkpoint', 'selected',
                      "With --workdir: 'selected', 'latest' or a step.")
  flags.DEFINE_string('out', None, 'Folder for annotated copies.')
  flags.DEFINE_bool('json', False, 'JSON lines on stdout.')
  flags.DEFINE_bool('no_detect', False, 'Each input is already a cropped face.')
  flags.DEFINE_integer('video_stride', video.Options.stride,
                       'Predict every n-th frame of a video.')
  flags.DEFINE_float('track_gap', video.Options.track_gap,
                     'Seconds a face may go unseen and keep its track id.')
  flags.DEFINE_float('smooth', video.Options.smooth,
                     'Half-life in seconds of the smoothing of each '
                     "track's probabilities (0: off).")
  app.run(main, flags_parser=functools.partial(errors.parse_flags,
                                               program='predict'))
