"""Annotated copies of predictions: each face's box, its top class with the
probability, and a bar per class beside the box."""
import numpy as np
from PIL import Image
from PIL import ImageDraw
from PIL import ImageFont

from fer_jax import errors

BOX = (255, 64, 32)
BAR = (40, 160, 255)


def draw(image, found):
  """A copy of the RGB uint8 `image` with the faces of `Predictor.predict`
  drawn on it: the box, the top class on a filled tag above it, and a panel
  beside it with a bar and the probability of every class."""
  picture = Image.fromarray(image).convert('RGB')
  pen = ImageDraw.Draw(picture)
  scale = max(1, round(max(picture.size) / 400))
  font = ImageFont.load_default(size=11 * scale)
  line = 13 * scale
  for face in found:
    x, y, w, h = face['box']
    pen.rectangle([x, y, x + w, y + h], outline=BOX, width=2 * scale)
    tag = f"{face['label']} {face['probabilities'][face['label']]:.0%}"
    top = max(0, y - line - 2 * scale)
    pen.rectangle([x, top, x + pen.textlength(tag, font=font) + 4 * scale,
                   top + line + scale], fill=BOX)
    pen.text((x + 2 * scale, top), tag, fill=(255, 255, 255), font=font)
    # The panel goes right of the box, or left of it if there is no room.
    bar = 50 * scale
    width = bar + max(pen.textlength(f'{name} 100%', font=font)
                      for name in face['probabilities']) + 8 * scale
    left = x + w + 4 * scale
    if left + width > picture.size[0]:
      left = max(0, x - width - 4 * scale)
    rows = len(face['probabilities'])
    pen.rectangle([left, y, left + width, y + rows * line + 2 * scale],
                  fill=(255, 255, 255))
    for i, (name, p) in enumerate(face['probabilities'].items()):
      row = y + i * line + scale
      pen.rectangle([left + 2 * scale, row + 2 * scale,
                     left + 2 * scale + round(bar * p), row + line - scale],
                    fill=BAR)
      pen.text((left + bar + 6 * scale, row), f'{name} {p:.0%}',
               fill=(0, 0, 0), font=font)
  return np.asarray(picture)


def save(image, path):
  """Writes an RGB image in the format of `path`'s extension (one Pillow
  writes: `predict_files.outputs` chooses it)."""
  try:
    Image.fromarray(image).save(path)
  except (KeyError, ValueError, OSError) as e:
    raise errors.UserError(f'{path}: could not write the annotated copy '
                           f'({e})') from None


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
