"""Per-image transforms of the input pipeline, on uint8 HxWxC numpy arrays.

Training: a random crop (the FER papers) or a random resized crop
(torchvision's RandomResizedCrop, EfficientFace), a horizontal flip, Cutout,
then scaling to [0, 1] and the optional per-channel normalisation.
Evaluation: ten crops or the centre crop of the same size, the same scaling.
Each function is tested in `tests/test_pipeline.py`.
"""
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


def ten_crop(image, size):
  """The four corner crops, the centre crop and their mirrors: (10, s, s, c)."""
  h, w = image.shape[:2]
  cy, cx = (h - size) // 2, (w - size) // 2
  offsets = [(0, 0), (0, w - size), (h - size, 0), (h - size, w - size),
             (cy, cx)]
  crops = np.stack([image[y:y + size, x:x + size] for y, x in offsets])
  return np.concatenate([crops, crops[:, :, ::-1]])


def centre_crop(image, size):
  h, w = image.shape[:2]
  y, x = (h - size) // 2, (w - size) // 2
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


def normalize(image, data_config):
  image = image.astype(np.float32) / 255.0
  if data_config.get('mean') is not None:
    image = (image - np.float32(data_config.mean)) / np.float32(data_config.std)
  return image


def train_transform(data_config):
  """The per-record training augmentation, a function of (example, rng)."""
  def transform(example, rng):
    if data_config.augment == 'resized_crop':
      image = random_resized_crop(example['image'], data_config.crop,
                                  data_config.crop_scale, rng)
    else:
      image = random_crop(example['image'], data_config.crop, rng)
    if data_config.flip and rng.random() < 0.5:
      image = image[:, ::-1]
    if data_config.cutout_holes:
      image = cutout(image, data_config.cutout_holes,
                     data_config.cutout_length, rng)
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
