"""Named shifts of the input: how a model fares on faces unlike its test
split's, as face detectors, cameras and other datasets give them.

  python launch.py --config=... --mode=eval --robustness

evaluates the checkpoint on every eval split once as stored and once under
each shift, and writes `eval/<split>_robustness.json`: accuracy, balanced
accuracy and macro-F1 per shift, each labelled whether the run's training
augments with it (`fer_jax.report` shows the table). Each shift is a fixed,
deterministic change of the stored image, made before the evaluation
transform (ten crops or the centre crop) exactly as a photograph would reach
it; `tests/test_robustness.py` checks that each makes the image it names.
Blur, JPEG and low resolution are never training augmentations here, so that
they stay unseen shifts.
"""
import io

import cv2
import numpy as np
from PIL import Image

from fer_jax.data import transforms

ZOOM = 0.15  # of the side: a detector's box tighter or looser than the crop
ROTATION = 15.0  # degrees
BRIGHTNESS = 0.4  # relative
BLUR_SIGMA = 1.0  # px at the stored size (48 px for FER2013)
JPEG_QUALITY = 30
LOW_RESOLUTION = 24  # px, then upscaled back


def _resize(image, h, w):
  return transforms.resize(np.ascontiguousarray(image), h, w)


def zoom_in(image):
  """The central 1 - ZOOM of each side, resized back: a tighter box."""
  h, w = image.shape[:2]
  dy, dx = round(h * ZOOM / 2), round(w * ZOOM / 2)
  return _resize(image[dy:h - dy, dx:w - dx], h, w)


def zoom_out(image):
  """ZOOM / 2 of each side added around by reflection, resized back: a
  looser box, the face smaller in the frame."""
  h, w = image.shape[:2]
  dy, dx = round(h * ZOOM / 2), round(w * ZOOM / 2)
  padded = np.pad(image, ((dy, dy), (dx, dx), (0, 0)), mode='reflect')
  return _resize(padded, h, w)


def rotate(image):
  """ROTATION degrees anticlockwise about the centre, border reflected."""
  h, w = image.shape[:2]
  matrix = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), ROTATION, 1.0)
  return cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR,
                        borderMode=cv2.BORDER_REFLECT_101).reshape(image.shape)


def _scaled(image, factor):
  return np.clip(np.rint(image.astype(np.float32) * factor), 0,
                 255).astype(np.uint8)


def brighter(image):
  return _scaled(image, 1 + BRIGHTNESS)


def darker(image):
  return _scaled(image, 1 - BRIGHTNESS)


def blur(image):
  """Gaussian blur of standard deviation BLUR_SIGMA px (kernel 6 sigma + 1)."""
  size = int(6 * BLUR_SIGMA) | 1
  return cv2.GaussianBlur(image, (size, size), BLUR_SIGMA,
                          borderType=cv2.BORDER_REFLECT_101
                          ).reshape(image.shape)


def jpeg(image):
  """Encoded as JPEG at quality JPEG_QUALITY and decoded (Pillow)."""
  picture = Image.fromarray(image[..., 0] if image.shape[2] == 1 else image)
  buffer = io.BytesIO()
  picture.save(buffer, format='JPEG', quality=JPEG_QUALITY)
  return np.asarray(Image.open(buffer)).reshape(image.shape)


def low_resolution(image):
  """Down to LOW_RESOLUTION px on the longer side and back up, bilinear."""
  h, w = image.shape[:2]
  scale = LOW_RESOLUTION / max(h, w)
  small = _resize(image, max(1, round(h * scale)), max(1, round(w * scale)))
  return _resize(small, h, w)


def _zoom_seen(c):
  low, high = c.get('scale', (1.0, 1.0))
  return bool(low <= 1 - ZOOM and high >= 1 + ZOOM)


def _at_least(key, value):
  # Configs saved before the augmentations existed have none of them.
  return lambda c: bool(c.get(key, 0.0) >= value)


# name -> (shift, what it is, whether a run's data config trains with it)
SHIFTS = {
    'zoom_in_15': (zoom_in, f'box {ZOOM:.0%} tighter', _zoom_seen),
    'zoom_out_15': (zoom_out, f'box {ZOOM:.0%} looser (reflected)',
                    _zoom_seen),
    'rotate_15': (rotate, f'rotated {ROTATION:g} degrees',
                  _at_least('rotation', ROTATION)),
    'brighter_40': (brighter, f'brightness x{1 + BRIGHTNESS:g}',
                    _at_least('brightness', BRIGHTNESS)),
    'darker_40': (darker, f'brightness x{1 - BRIGHTNESS:g}',
                  _at_least('brightness', BRIGHTNESS)),
    'blur_sigma1': (blur, f'Gaussian blur, sigma {BLUR_SIGMA:g} px',
                    lambda c: False),
    'jpeg_q30': (jpeg, f'JPEG quality {JPEG_QUALITY}', lambda c: False),
    'low_res_24': (low_resolution, f'{LOW_RESOLUTION} px, upscaled back',
                   lambda c: False),
}


def shifted_source(source, shift):
  """An indexable source whose records' images are `shift`ed."""
  class Shifted:
    def __len__(self):
      return len(source)

    def __getitem__(self, index):
      record = dict(source[index])
      record['image'] = shift(np.asarray(record['image']))
      return record
  return Shifted()
