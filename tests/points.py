"""Images of one bright point and where their brightness is: how the
geometric augmentations and shifts are measured (test_augment.py,
test_robustness.py)."""
import numpy as np

SIDE = 48
CENTRE = (SIDE - 1) / 2


def dot(y, x):
  """A black SIDE x SIDE image with one bright 3x3 dot centred at (y, x)."""
  image = np.zeros((SIDE, SIDE, 1), np.uint8)
  image[y - 1:y + 2, x - 1:x + 2] = 255
  return image


def where(image):
  """The brightness-weighted centre (y, x) of an image."""
  weights = image[..., 0].astype(np.float64)
  ys, xs = np.mgrid[:SIDE, :SIDE]
  return (np.sum(ys * weights) / weights.sum(),
          np.sum(xs * weights) / weights.sum())
