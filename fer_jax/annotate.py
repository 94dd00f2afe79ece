"""Annotated copies of predictions: each face's box, its top class with the
probability, and a bar per class beside the box."""
import numpy as np
from PIL import Image
from PIL import ImageDraw
from PIL import ImageFont

from fer_jax import errors

BOX = (255, 64, 32)
BAR = (40, 160, 255)


def _panel_width(pen, font, scale, names):
  return 50 * scale + max(pen.textlength(f'{name} 100%', font=font)
                          for name in names) + 8 * scale


def draw(image, found, extend=True):
  """A copy of the RGB uint8 `image` with the faces of `Predictor.predict`
  drawn on it: the box, the top class (and the track id, in a video) on a
  filled tag above it, and a panel beside it with a bar and the probability
  of every class (smoothed over the track, in a video).

  The panel goes right of the box, or left of it if there is no room; if
  neither side has room, the canvas is widened on the right with white
  (`extend`), so that the panel never covers the face. Video frames keep
  their size (`extend` False), the panel then drawn as near as fits."""
  picture = Image.fromarray(image).convert('RGB')
  scale = max(1, round(max(picture.size) / 400))
  font = ImageFont.load_default(size=11 * scale)
  line = 13 * scale
  pen = ImageDraw.Draw(picture)
  places = []
  for face in found:
    x, y, w, h = face['box']
    width = _panel_width(pen, font, scale, face['probabilities'])
    left = x + w + 4 * scale
    if left + width > picture.size[0] and x - width - 4 * scale >= 0:
      left = x - width - 4 * scale
    places.append((left, width))
  overflow = max([left + width - picture.size[0] for left, width in places],
                 default=0)
  if overflow > 0:
    if extend:
      wider = Image.new('RGB', (picture.size[0] + int(np.ceil(overflow)),
                                picture.size[1]), (255, 255, 255))
      wider.paste(picture, (0, 0))
      picture = wider
      pen = ImageDraw.Draw(picture)
    else:
      places = [(max(0, min(left, picture.size[0] - width)), width)
                for left, width in places]
  for face, (left, width) in zip(found, places):
    x, y, w, h = face['box']
    probabilities = face.get('smoothed', face['probabilities'])
    label = face.get('smoothed_label', face['label'])
    pen.rectangle([x, y, x + w, y + h], outline=BOX, width=2 * scale)
    tag = (f"#{face['track']} " if 'track' in face else '') + (
        f'{label} {probabilities[label]:.0%}')
    top = max(0, y - line - 2 * scale)
    pen.rectangle([x, top, x + pen.textlength(tag, font=font) + 4 * scale,
                   top + line + scale], fill=BOX)
    pen.text((x + 2 * scale, top), tag, fill=(255, 255, 255), font=font)
    bar = 50 * scale
    rows = len(probabilities)
    pen.rectangle([left, y, left + width, y + rows * line + 2 * scale],
                  fill=(255, 255, 255))
    for i, (name, p) in enumerate(probabilities.items()):
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
