"""Decoding an image file the one way every command does.

Two rules Pillow does not apply by itself:
- Only regular files are opened: opening a FIFO (or a device) blocks until
  something writes to it, so a folder holding one would hang `predict` and
  `fer_jax.data.prepare` forever.
- Integer grey images deeper than 8 bits (16-bit PNG and TIFF, 12-bit TIFF)
  are scaled by their bit depth: Pillow's `convert('L')` clips them to 255
  instead, which turns a mid-grey 16-bit face white. Floating-point images
  carry no range to scale by and are refused. (Pillow reads 16-bit RGB files
  as 8-bit RGB already.)
Tested by tests/test_image_files.py with real 16-bit PNG and TIFF files and
a FIFO.
"""
import os
import stat

import numpy as np
from PIL import Image
from PIL import ImageOps

from fer_jax import errors

_TIFF_BITS_PER_SAMPLE = 258


def check_regular(path, error=errors.UserError):
  """Raises `error` unless `path` is a regular file (or a link to one)."""
  try:
    mode = os.stat(path).st_mode
  except OSError as e:
    raise error(f'{path}: cannot be read ({e.strerror})') from None
  if not stat.S_ISREG(mode):
    kind = ('a FIFO' if stat.S_ISFIFO(mode) else 'a folder'
            if stat.S_ISDIR(mode) else 'a socket' if stat.S_ISSOCK(mode)
            else 'a device')
    raise error(f'{path}: {kind}, not a regular file')


def _bit_depth(picture):
  bits = getattr(picture, 'tag_v2', {}).get(_TIFF_BITS_PER_SAMPLE)
  if isinstance(bits, tuple):
    bits = bits[0]
  return int(bits) if bits else 16 if picture.mode.startswith('I;16') else 32


def _to_8bit(picture, path, error):
  if picture.mode == 'F':
    raise error(
        f'{path}: a floating-point image has no range to scale to 8 bits; '
        'save it as an 8- or 16-bit image')
  if picture.mode != 'I' and not picture.mode.startswith('I;16'):
    return picture
  top = 2 ** _bit_depth(picture) - 1
  values = np.asarray(picture).astype(np.float64)
  return Image.fromarray(
      np.clip(np.round(values * (255 / top)), 0, 255).astype(np.uint8), 'L')


def read(path, mode, error=errors.UserError, exif=False):
  """The image at `path` as a uint8 array in Pillow `mode` ('L' or 'RGB'),
  EXIF orientation applied if `exif`; a file that is not a readable image
  raises `error` naming it."""
  check_regular(path, error)
  try:
    with Image.open(path) as picture:
      picture.load()  # decodes now, so a truncated file fails here
      if exif:
        picture = ImageOps.exif_transpose(picture)
      return np.asarray(_to_8bit(picture, path, error).convert(mode),
                        np.uint8)
  except errors.UserError:
    raise
  except (OSError, ValueError, Image.DecompressionBombError) as e:
    raise error(f'{path}: not a readable image ({e})') from None
