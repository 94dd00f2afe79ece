"""Annotated copies of predictions: each face's box, its top class with the
probability, and a bar per class beside the box."""
import os

import numpy as np
from PIL import Image
from PIL import ImageDraw
from PIL import ImageFont

BOX = (255, 64, 32)
BAR = (40, 160, 255)


def draw(image, found):
  """A copy of the RGB uint8 `image` with the `faces` of `Predictor.predict`
  drawn on it."""
  picture = Image.fromarray(image).convert('RGB')
  pen = ImageDraw.Draw(picture)
  scale = max(1, round(max(picture.size) / 400))
  font = ImageFont.load_default(size=11 * scale)
  for face in found:
    x, y, w, h = face['box']
    pen.rectangle([x, y, x + w, y + h], outline=BOX, width=2 * scale)
    top = face['probabilities'][face['label']]
    pen.text((x, max(0, y - 14 * scale)), f"{face['label']} {top:.0%}",
             fill=BOX, font=font)
    # One bar per class, to the right of the box (left if no room).
    length = 60 * scale
    left = x + w + 4 * scale
    if left + length + 50 * scale > picture.size[0]:
      left = max(0, x - length - 54 * scale)
    for i, (name, p) in enumerate(face['probabilities'].items()):
      row = y + i * 13 * scale
      pen.rectangle([left, row + 2, left + round(length * p), row + 11 * scale],
                    fill=BAR)
      pen.text((left + length + 3 * scale, row), name, fill=BAR, font=font)
  return np.asarray(picture)


def save(image, path):
  """Writes an RGB image; formats Pillow cannot write become PNG."""
  picture = Image.fromarray(image)
  try:
    picture.save(path)
  except (KeyError, ValueError, OSError):
    picture.save(os.path.splitext(path)[0] + '.png')


class VideoWriter:
  """An annotated video (MPEG-4), frame by frame."""

  def __init__(self, path, fps, shape):
    import cv2  # pylint: disable=g-import-not-at-top
    self._cv2 = cv2
    self._writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*'mp4v'),
                                   max(fps, 1.0), (shape[1], shape[0]))

  def write(self, frame):
    self._writer.write(self._cv2.cvtColor(frame, self._cv2.COLOR_RGB2BGR))

  def close(self):
    self._writer.release()
