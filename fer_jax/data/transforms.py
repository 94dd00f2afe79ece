"""Per-image transforms of the input pipeline, on uint8 HxWxC numpy arrays.

Training, in this order: a random affine warp of the stored image (rotation,
scale, shift; the border reflected, as a face crop continues beyond its
box), a random crop (the FER papers) or a random resized crop
(torchvision's RandomResizedCrop, EfficientFace), a horizontal flip,
photometric changes (brightness, contrast, gamma), Cutout, random erasing,
then scaling to [0, 1] and the optional per-channel normalisation. Every
random draw comes from the record's own generator, which grain derives from
the seed and the record's position, so that the stream is the same after a
resume and for any process count; a transform that is switched off draws
nothing, so a config without it trains as before it existed. Evaluation:
ten crops or the centre crop of the same size, the same scaling. Each
function is tested in `tests/test_pipeline.py` and `tests/test_augment.py`.
"""
import functools

import cv2
import numpy as np
from PIL import Image


def random_crop(image, size, rng):
  h, w = image.shape[:2]
  y, x = rng.integers(0, h - size + 1), rng.integers(0, w - size + 1)
  return image[y:y + size, x:x + size]


def cutout(image, holes, length, rng):
  """Zeroes `holes` squares of side `length` centred anywhere in the image.

  As in DeVries & Taylor (2017), "Improved regularization of convolutional
  neural networks with Cutout": the centre may lie near the border, in which
  case the square is clipped.
  """
  image = image.copy()
  h, w = image.shape[:2]
  for _ in range(holes):
    cy, cx = rng.integers(0, h), rng.integers(0, w)
    image[max(cy - length // 2, 0):cy + (length + 1) // 2,
          max(cx - length // 2, 0):cx + (length + 1) // 2] = 0
  return image


def affine(image, rotation, scale, translation, rng):
  """A random rotation of up to +-`rotation` degrees about the centre, a
  scale drawn uniformly from `scale` (low, high) and a shift of up to
  `translation` of each side, bilinear, the border reflected."""
  h, w = image.shape[:2]
  angle = rng.uniform(-rotation, rotation)
  factor = rng.uniform(*scale)
  dx, dy = rng.uniform(-translation, translation, 2) * (w, h)
  matrix = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), angle, factor)
  matrix[:, 2] += (dx, dy)
  out = cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_REFLECT_101)
  return out.reshape(image.shape)


def photometric(image, brightness, contrast, gamma, rng):
  """Brightness x(1 +- b), contrast about the image's mean x(1 +- c) and a
  gamma in [1/(1+g), 1+g] (log-uniform), each drawn only when its range is
  not 0, in that order; rounded back to uint8."""
  x = image.astype(np.float32)
  if brightness:
    x = x * rng.uniform(1 - brightness, 1 + brightness)
  if contrast:
    mean = x.mean()
    x = (x - mean) * rng.uniform(1 - contrast, 1 + contrast) + mean
  if gamma:
    exponent = np.exp(rng.uniform(-np.log1p(gamma), np.log1p(gamma)))
    x = 255 * (np.clip(x, 0, 255) / 255) ** exponent
  return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def random_erasing(image, probability, area, rng, aspect=(0.3, 3.3)):
  """Zhong et al. (2020): with `probability`, a rectangle of `area` (low,
  high) of the image and an aspect in `aspect` (log-uniform) is filled with
  uniform noise; up to 10 draws for a rectangle that fits, else none."""
  if rng.random() >= probability:
    return image
  h, w = image.shape[:2]
  for _ in range(10):
    target = h * w * rng.uniform(*area)
    ratio = np.exp(rng.uniform(np.log(aspect[0]), np.log(aspect[1])))
    eh, ew = round(np.sqrt(target * ratio)), round(np.sqrt(target / ratio))
    if 0 < eh < h and 0 < ew < w:
      y, x = rng.integers(0, h - eh + 1), rng.integers(0, w - ew + 1)
      image = image.copy()
      image[y:y + eh, x:x + ew] = rng.integers(
          0, 256, (eh, ew, image.shape[2]), np.uint8)
      return image
  return image


def crop_offsets(height, width, size):
  """(y, x) of the four corner crops and the centre crop (the last), in
  the order of `ten_crop`; the ONNX export (`fer_jax.export`) crops by them
  too."""
  cy, cx = (height - size) // 2, (width - size) // 2
  return [(0, 0), (0, width - size), (height - size, 0),
          (height - size, width - size), (cy, cx)]


def ten_crop(image, size):
  """The four corner crops, the centre crop and their mirrors: (10, s, s, c)."""
  crops = np.stack([image[y:y + size, x:x + size]
                    for y, x in crop_offsets(*image.shape[:2], size)])
  return np.concatenate([crops, crops[:, :, ::-1]])


def centre_crop(image, size):
  y, x = crop_offsets(*image.shape[:2], size)[-1]
  return image[y:y + size, x:x + size]


def resize(image, height, width):
  """Bilinear resize of an (H, W, C) uint8 image."""
  resized = Image.fromarray(image[..., 0] if image.shape[2] == 1 else image)
  resized = np.asarray(resized.resize((width, height), Image.BILINEAR))
  return resized.reshape(height, width, image.shape[2])


def random_resized_crop(image, size, scale, rng, ratio=(3 / 4, 4 / 3)):
  """A random crop of `scale` of the area and `ratio` aspect, resized.

  torchvision's RandomResizedCrop: up to 10 draws, else the whole image.
  """
  h, w = image.shape[:2]
  for _ in range(10):
    area = h * w * rng.uniform(*scale)
    aspect = np.exp(rng.uniform(np.log(ratio[0]), np.log(ratio[1])))
    cw, ch = round(np.sqrt(area * aspect)), round(np.sqrt(area / aspect))
    if 0 < cw <= w and 0 < ch <= h:
      y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
      return resize(image[y:y + ch, x:x + cw], size, size)
  return resize(image, size, size)


def _normalized(image, mean, std):
  image = image.astype(np.float32) / 255.0
  if mean is not None:
    image = (image - np.float32(mean)) / np.float32(std)
  return image


@functools.lru_cache(maxsize=8)
def _levels(mean, std):
  """(256, channels): `_normalized` of each uint8 level in each channel,
  by the very float32 operations applied to each pixel."""
  return _normalized(np.arange(256, dtype=np.uint8)[:, None], mean, std)


def normalize(image, data_config):
  """Scaled to [0, 1], then, with the config's mean and std, normalised
  per channel; float32. A uint8 image with a mean and std looks its
  values up in a table of the 256 levels: the same bytes as the formula
  (`tests/test_augment.py::test_normalising_by_table_gives_the_formulas_bytes`),
  2.5x faster at 224x224x3, where the formula's three passes over float
  copies were most of the RAF-DB recipe's time (`fer_jax.bench_input`)."""
  mean, std = data_config.get('mean'), data_config.get('std')
  if mean is None or image.dtype != np.uint8:
    return _normalized(image, mean, std)
  table = _levels(tuple(mean), tuple(std))
  return np.stack([np.take(table[:, c], image[..., c])
                   for c in range(image.shape[-1])], axis=-1)


def train_transform(data_config):
  """The per-record training augmentation, a function of (example, rng)."""
  c = data_config
  warp = c.rotation or c.translation or tuple(c.scale) != (1.0, 1.0)

  def transform(example, rng):
    image = example['image']
    if warp:
      image = affine(image, c.rotation, c.scale, c.translation, rng)
    if c.augment == 'resized_crop':
      image = random_resized_crop(image, c.crop, c.crop_scale, rng)
    else:
      image = random_crop(image, c.crop, rng)
    if c.flip and rng.random() < 0.5:
      image = image[:, ::-1]
    if c.brightness or c.contrast or c.gamma:
      image = photometric(image, c.brightness, c.contrast, c.gamma, rng)
    if c.cutout_holes:
      image = cutout(image, c.cutout_holes, c.cutout_length, rng)
    if c.erasing:
      image = random_erasing(image, c.erasing, c.erasing_area, rng)
    return {'image': normalize(image, data_config),
            'label': np.int32(example['label'])}
  return transform


def eval_transform(data_config):
  crop = ten_crop if data_config.eval_crop == 'ten' else centre_crop
  def transform(example):
    image = example['image']
    if data_config.augment == 'resized_crop':  # test on the whole image
      image = resize(image, data_config.crop, data_config.crop)
    return {'image': normalize(crop(image, data_config.crop), data_config),
            'label': np.int32(example['label']), 'mask': np.bool_(True)}
  return transform
