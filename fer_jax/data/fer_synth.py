"""fer_synth: procedural 48x48 grayscale faces in FER2013's seven classes.

The dataset ships with the project (nothing is downloaded) so that the demo and
the tests train a real model on real-looking data in seconds. Each face is
drawn from signed-distance shapes (oval, eyes, brows, nose, mouth) whose
geometry depends on the expression, then moved, scaled, rotated, relit, noised
and sometimes partly occluded, so that no linear model on raw pixels solves it
(tests/test_fer_synth.py pins that) while a small CNN does.
"""
import dataclasses

import numpy as np
import tensorflow_datasets as tfds

from fer_jax.data import fer2013
from fer_jax.data import splits

CLASS_NAMES = fer2013.CLASS_NAMES  # FER2013's label order
# FER2013 train split's class counts, used as class proportions here.
FER2013_TRAIN_COUNTS = (3995, 436, 4097, 7215, 4830, 3171, 4965)
SPLITS = ('train', 'validation', 'test')
IMAGE_SIZE = 48

# Expression geometry in face coordinates (u right, v down, face half-height
# 0.8). brow_in/brow_out: brow heights at the inner and outer ends (more
# negative is higher); eye_h: eye half-height; mouth_w: mouth half-width;
# mouth_k: corner lift (positive smiles); mouth_open: half-opening;
# mouth_tilt: one-sided lip raise (disgust); wrinkle: nose wrinkle strength.
NEUTRAL = dict(brow_in=-0.33, brow_out=-0.33, eye_h=0.055, mouth_w=0.2,
               mouth_k=0.0, mouth_open=0.0, mouth_tilt=0.0, wrinkle=0.0)
EXPRESSIONS = (
    dict(NEUTRAL, brow_in=-0.2, brow_out=-0.38, eye_h=0.04, mouth_w=0.16,
         mouth_k=-0.05),  # angry
    dict(NEUTRAL, brow_in=-0.25, brow_out=-0.3, eye_h=0.03, mouth_w=0.18,
         mouth_k=-0.06, mouth_tilt=0.35, wrinkle=1.0),  # disgust
    dict(NEUTRAL, brow_in=-0.45, brow_out=-0.33, eye_h=0.09, mouth_w=0.27,
         mouth_k=-0.04, mouth_open=0.045),  # fear
    dict(NEUTRAL, eye_h=0.03, mouth_w=0.28, mouth_k=0.16),  # happy
    dict(NEUTRAL, brow_in=-0.43, brow_out=-0.26, eye_h=0.045, mouth_w=0.2,
         mouth_k=-0.13),  # sad
    dict(NEUTRAL, brow_in=-0.48, brow_out=-0.48, eye_h=0.1, mouth_w=0.1,
         mouth_open=0.13),  # surprise
    NEUTRAL,  # neutral
)


def _stroke(dist, width, px):
  """Anti-aliased coverage of a stroke of half-width `width` at distance `dist`."""
  return np.clip((width - dist) / px + 0.5, 0.0, 1.0)


def render_face(label, rng):
  """Draws one face of class `label`; returns a uint8 array of shape (48, 48)."""
  p = {k: v + rng.uniform(0.6, 1.25) * (EXPRESSIONS[label][k] - v)
       for k, v in NEUTRAL.items()}
  p = {k: v + rng.normal(0, 0.012) for k, v in p.items()}
  if rng.random() < 0.5:  # disgust's lip raise is on either side
    p['mouth_tilt'] = -p['mouth_tilt']

  scale = rng.uniform(0.9, 1.25) * IMAGE_SIZE / 2.0  # pixels per face unit
  angle = np.deg2rad(rng.uniform(-20, 20))
  centre = IMAGE_SIZE / 2 + rng.uniform(-5, 5, size=2)
  ys, xs = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE] + 0.5
  dx, dy = (xs - centre[0]) / scale, (ys - centre[1]) / scale
  u = np.cos(angle) * dx + np.sin(angle) * dy
  v = -np.sin(angle) * dx + np.cos(angle) * dy
  px = 1.0 / scale  # one pixel in face units
  au = np.abs(u)

  background = rng.uniform(0.05, 0.45)
  skin = rng.uniform(0.55, 0.85)
  ink = skin * rng.uniform(0.1, 0.35)
  img = np.full(u.shape, background)
  face = _stroke(np.hypot(u / 0.62, v / 0.8) - 1.0, 0.0, px / 0.7)
  img = img + face * (skin - img)

  def draw(coverage, value):
    nonlocal img
    img = img + coverage * face * (value - img)

  # Eyes: ellipses at (+-0.25, -0.12) with an expression-dependent height.
  eye = np.hypot((au - 0.25) / 0.12, (v + 0.12) / max(p['eye_h'], 0.015))
  draw(_stroke((eye - 1.0) * max(p['eye_h'], 0.015), 0.0, px), ink)
  # Brows: segments from the inner end (|u|=0.1) to the outer end (|u|=0.38).
  t = np.clip((au - 0.1) / 0.28, 0.0, 1.0)
  brow_v = p['brow_in'] + t * (p['brow_out'] - p['brow_in'])
  brow_d = np.hypot(v - brow_v, au - (0.1 + 0.28 * t))
  draw(_stroke(brow_d, 0.045, px), ink)
  # Nose, with horizontal wrinkles across the bridge for disgust.
  nose_d = np.hypot(au - 0.04, np.maximum(np.abs(v - 0.12) - 0.08, 0.0))
  draw(0.6 * _stroke(nose_d, 0.018, px), ink)
  if p['wrinkle'] > 0.3:
    for wv in (-0.02, 0.04):
      wr = np.hypot(np.maximum(au - 0.1, 0.0), v - wv)
      draw(min(p['wrinkle'], 1.0) * _stroke(wr, 0.015, px), ink)
  # Mouth: a curve v = y0 - k (u/w)^2 + tilt u, opened by `mouth_open`.
  w = max(p['mouth_w'], 0.05)
  along = np.clip(u / w, -1.0, 1.0)
  centre_v = 0.42 - p['mouth_k'] * along**2 + p['mouth_tilt'] * 0.3 * along
  half_open = max(p['mouth_open'], 0.0) * (1 - along**2) ** 0.5
  outside = np.maximum(au - w, 0.0)
  lip_d = np.hypot(np.maximum(np.abs(v - centre_v) - half_open, 0.0), outside)
  draw(_stroke(lip_d, 0.035, px), ink)

  # Nuisances: a lighting gradient, contrast, occluders and sensor noise.
  gx, gy = rng.uniform(-0.3, 0.3, size=2)
  img = img + gx * (xs / IMAGE_SIZE - 0.5) + gy * (ys / IMAGE_SIZE - 0.5)
  img = (img - 0.5) * rng.uniform(0.6, 1.2) + 0.5 + rng.uniform(-0.1, 0.1)
  if rng.random() < 0.3:
    h, wd = rng.integers(8, 20, size=2)
    y0, x0 = rng.integers(0, IMAGE_SIZE - h), rng.integers(0, IMAGE_SIZE - wd)
    img[y0:y0 + h, x0:x0 + wd] = rng.uniform(0.0, 1.0)
  img = img + rng.normal(0, rng.uniform(0.02, 0.08), size=img.shape)
  return np.round(np.clip(img, 0.0, 1.0) * 255).astype(np.uint8)


def split_labels(size, split_id, seed=0):
  """A split's labels in example order: FER2013's proportions, shuffled."""
  counts = np.asarray(FER2013_TRAIN_COUNTS) / sum(FER2013_TRAIN_COUNTS) * size
  counts = np.floor(counts).astype(int)
  counts[np.argmax(counts)] += size - counts.sum()
  labels = np.repeat(np.arange(len(CLASS_NAMES)), counts)
  return np.random.default_rng([seed, split_id]).permutation(labels)


def generate_split(split, size, seed=0):
  """Yields (index, image (48, 48, 1) uint8, label) for one split."""
  split_id = SPLITS.index(split)
  for i, label in enumerate(split_labels(size, split_id, seed)):
    rng = np.random.default_rng([seed, split_id, i])
    yield i, render_face(int(label), rng)[..., None], int(label)


@dataclasses.dataclass(eq=False)
class FerSynthConfig(tfds.core.BuilderConfig):
  """Split sizes: `default` for the demo, `small` for tests and smoke runs."""
  sizes: dict[str, int] = dataclasses.field(default_factory=dict)


class FerSynth(splits.StoredSplits, tfds.core.GeneratorBasedBuilder):
  """Procedural faces in FER2013's layout: 48x48x1 uint8, 7 classes."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'First release.'}
  BUILDER_CONFIGS = [
      FerSynthConfig(name='default',
                     sizes={'train': 6000, 'validation': 750, 'test': 1500}),
      FerSynthConfig(name='small',
                     sizes={'train': 512, 'validation': 128, 'test': 128}),
  ]

  def _info(self):
    return self.dataset_info_from_configs(
        description=__doc__,
        features=tfds.features.FeaturesDict({
            # Stored as a raw tensor, not features.Image: encoding PNGs in
            # TFDS needs TensorFlow, which is not a dependency.
            'image': tfds.features.Tensor(
                shape=(IMAGE_SIZE, IMAGE_SIZE, 1), dtype=np.uint8),
            'label': tfds.features.ClassLabel(names=CLASS_NAMES),
        }),
        supervised_keys=('image', 'label'),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download.
    return {split: self._generate_examples(split, size)
            for split, size in self.builder_config.sizes.items()}

  def _generate_examples(self, split, size):
    for i, image, label in generate_split(split, size):
      yield i, {'image': image, 'label': label}
