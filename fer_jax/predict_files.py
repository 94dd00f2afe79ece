"""Which files `fer_jax.predict` reads, and where their annotated copies go.

Inputs: files as given, folders searched recursively (sorted; hidden files
and folders left out). Annotated copies under `--out=OUT` mirror the inputs,
so that two inputs never share an output by accident: a file argument
`a/x.jpg` gives `OUT/x.jpg`, a folder argument `photos/` gives
`OUT/photos/<its path inside photos>`. A video's copy is `.mp4`, beside its
`_timeline.csv` and `_timeline.png`; an image in a format Pillow cannot
write becomes `.png`. Inputs that would still share an output
(`a/x.jpg` and `b/x.jpg`, `a/photos/` and `b/photos/`, `x.avi` and `x.mp4`
in one folder) are refused before anything is written
(tests/test_predict.py::test_same_named_inputs_get_their_own_outputs_or_are_refused).
"""
import os

from PIL import Image

from fer_jax import errors

VIDEO_EXTENSIONS = ('.mp4', '.avi', '.mov', '.mkv', '.webm', '.m4v')


def is_video(path):
  return path.lower().endswith(VIDEO_EXTENSIONS)


def expand(inputs):
  """[(file, its output path relative to --out)] of the input arguments."""
  found = []
  for argument in inputs:
    if not os.path.isdir(argument):
      found.append((argument, os.path.basename(argument)))
      continue
    top = os.path.basename(os.path.normpath(os.path.abspath(argument)))
    for root, dirs, files in os.walk(argument):
      dirs[:] = sorted(d for d in dirs if not d.startswith('.'))
      for name in sorted(files):
        if not name.startswith('.'):
          path = os.path.join(root, name)
          found.append((path, os.path.join(top, os.path.relpath(
              path, argument))))
  return found


def _writable_extension(path):
  if is_video(path):
    return '.mp4'
  extension = os.path.splitext(path)[1].lower()
  writable = Image.registered_extensions().get(extension) in Image.SAVE
  return extension if writable else '.png'


def timeline_paths(target):
  """The CSV and PNG timelines (`fer_jax.timeline`) of a video's copy."""
  stem = os.path.splitext(target)[0]
  return [stem + '_timeline.csv', stem + '_timeline.png']


def outputs(found, out):
  """Where the annotated copy of each of `found` goes under `out`; a
  UserError if `out` is not a folder or two files would share an output."""
  if os.path.exists(out) and not os.path.isdir(out):
    raise errors.UserError(f'--out={out}: a file, not a folder; give a '
                           'folder for the annotated copies')
  targets, claimed = [], {}
  for path, relative in found:
    target = os.path.join(out, os.path.splitext(relative)[0]
                          + _writable_extension(path))
    for written in [target] + (timeline_paths(target) if is_video(path)
                               else []):
      other = claimed.setdefault(os.path.normcase(written), path)
      if other != path:
        raise errors.UserError(
            f'--out={out}: {other} and {path} would both be written to '
            f'{written}; give them in folders of different names, or '
            'predict them in separate commands')
    targets.append(target)
  return targets
