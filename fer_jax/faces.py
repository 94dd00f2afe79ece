"""Finding faces in photos: OpenCV's frontal-face Haar cascade, offline.

The cascade file ships inside `opencv-python-headless` (below version 5,
which dropped `CascadeClassifier` and the cascade files). A detection is
widened by `MARGIN` on each side and made square, because the datasets'
crops hold the whole head with a little background (FER2013's 48x48 faces
and CK+48's are registered that way), while the cascade's box hugs the
eyebrows-to-mouth region. `tests/test_predict.py` checks the box on a real
photograph.
"""
import numpy as np

MARGIN = 0.1  # of the box's side, on every side
MIN_SIZE = 24  # pixels; smaller detections are mostly false positives


def _cascade():
  import cv2  # pylint: disable=g-import-not-at-top
  path = cv2.data.haarcascades + 'haarcascade_frontalface_default.xml'
  cascade = cv2.CascadeClassifier(path)
  if cascade.empty():
    raise RuntimeError(f'{path}: OpenCV could not load its face cascade')
  return cascade


_CASCADE = None


def detect(image):
  """[(x, y, w, h)] of the faces in an HxWx3 RGB or HxW uint8 image, square
  boxes with the margin, clipped to the image, largest first."""
  import cv2  # pylint: disable=g-import-not-at-top
  global _CASCADE
  if _CASCADE is None:
    _CASCADE = _cascade()
  grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
  found = _CASCADE.detectMultiScale(
      cv2.equalizeHist(grey), scaleFactor=1.1, minNeighbors=5,
      minSize=(MIN_SIZE, MIN_SIZE))
  height, width = grey.shape
  boxes = []
  for x, y, w, h in sorted(np.asarray(found).reshape(-1, 4).tolist(),
                           key=lambda b: -b[2] * b[3]):
    side = round(max(w, h) * (1 + 2 * MARGIN))
    cx, cy = x + w / 2, y + h / 2
    x0, y0 = max(0, round(cx - side / 2)), max(0, round(cy - side / 2))
    boxes.append((x0, y0, min(side, width - x0), min(side, height - y0)))
  return boxes
