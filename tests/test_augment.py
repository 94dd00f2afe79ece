"""The augmentations for faces as detectors and other datasets give them:
each deterministic per seed, within its stated range, resumable."""
import grain
import ml_collections
import numpy as np
import pytest

import points
from points import CENTRE, SIDE
from configs import demo
from fer_jax import config_check
from fer_jax import errors
from fer_jax.data import pipeline
from fer_jax.data import transforms


def _polar(y, x):
  dy, dx = y - CENTRE, x - CENTRE
  return np.hypot(dy, dx), np.degrees(np.arctan2(dy, dx))


def _draws(fn, n=300):
  return [fn(np.random.default_rng(seed)) for seed in range(n)]


def test_each_augmentation_is_deterministic_per_seed():
  image = np.random.default_rng(0).integers(0, 256, (SIDE, SIDE, 1),
                                            np.uint8)
  for fn in (lambda rng: transforms.affine(image, 15, (0.8, 1.2), 0.1, rng),
             lambda rng: transforms.photometric(image, 0.4, 0.4, 0.5, rng),
             lambda rng: transforms.random_erasing(image, 1.0, (0.02, 0.33),
                                                   rng)):
    a, b, c = (fn(np.random.default_rng(seed)) for seed in (7, 7, 8))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.dtype == np.uint8 and a.shape == image.shape


def test_rotation_turns_a_point_by_at_most_the_stated_degrees():
  y, x = 24, 40  # 16.5 px right of the centre, 0.5 px below it
  _, before = _polar(y, x)
  turns = []
  for out in _draws(lambda rng: transforms.affine(points.dot(y, x), 15, (1.0, 1.0),
                                                  0.0, rng)):
    radius, angle = _polar(*points.where(out))
    assert abs(radius - np.hypot(y - CENTRE, x - CENTRE)) < 0.5
    turns.append(angle - before)
  turns = np.asarray(turns)
  assert np.all(np.abs(turns) <= 15.5)
  assert turns.min() < -12 and turns.max() > 12  # uniform over the range
  assert abs(np.mean(turns)) < 2


def test_scale_moves_a_point_from_the_centre_by_the_stated_factors():
  y, x = 24, 40
  radius = np.hypot(y - CENTRE, x - CENTRE)
  factors = np.asarray([
      _polar(*points.where(out))[0] / radius for out in _draws(
          lambda rng: transforms.affine(points.dot(y, x), 0, (0.8, 1.2), 0.0,
                                        rng))])
  assert factors.min() >= 0.8 - 0.03 and factors.max() <= 1.2 + 0.03
  assert factors.min() < 0.83 and factors.max() > 1.17
  assert abs(np.mean(factors) - 1) < 0.02


def test_translation_shifts_by_at_most_the_stated_fraction_of_the_side():
  shifts = np.asarray([
      np.subtract(points.where(out), (24, 24)) for out in _draws(
          lambda rng: transforms.affine(points.dot(24, 24), 0, (1.0, 1.0), 0.1,
                                        rng))])
  assert np.all(np.abs(shifts) <= 0.1 * SIDE + 0.3)
  assert np.abs(shifts).max() > 0.08 * SIDE


def test_the_warped_border_is_reflected_not_black():
  # A horizontal gradient, rotated and shrunk: a black fill would put zeros
  # in the corners; reflection keeps the image's own values.
  image = np.tile(np.linspace(60, 200, SIDE).astype(np.uint8)[None, :, None],
                  (SIDE, 1, 1))
  for out in _draws(lambda rng: transforms.affine(image, 15, (0.8, 0.8),
                                                  0.1, rng), n=20):
    assert out.min() >= 59 and out.max() <= 201


def test_photometric_changes_stay_in_their_ranges():
  flat = np.full((SIDE, SIDE, 1), 100, np.uint8)
  brightness = np.asarray([out[0, 0, 0] for out in _draws(
      lambda rng: transforms.photometric(flat, 0.4, 0, 0, rng))])
  assert brightness.min() >= 60 and brightness.max() <= 140
  assert brightness.min() < 65 and brightness.max() > 135
  two = np.zeros((SIDE, SIDE, 1), np.uint8)
  two[:, :SIDE // 2], two[:, SIDE // 2:] = 80, 120  # mean 100, spread 40
  for out in _draws(lambda rng: transforms.photometric(two, 0, 0.4, 0, rng),
                    n=50):
    spread = int(out[0, -1, 0]) - int(out[0, 0, 0])
    assert 24 - 1 <= spread <= 56 + 1
    assert abs(out.mean() - 100) <= 0.5  # about the image's own mean
  grey = np.full((SIDE, SIDE, 1), 64, np.uint8)  # 0.25 of white
  gammas = np.asarray([
      np.log(out[0, 0, 0] / 255) / np.log(64 / 255) for out in _draws(
          lambda rng: transforms.photometric(grey, 0, 0, 0.5, rng))])
  assert gammas.min() >= 1 / 1.5 - 0.02 and gammas.max() <= 1.5 + 0.02
  assert abs(np.mean(np.log(gammas))) < 0.05  # log-uniform about 1


def test_random_erasing_happens_at_its_rate_with_its_area():
  image = np.full((SIDE, SIDE, 1), 128, np.uint8)
  outs = _draws(lambda rng: transforms.random_erasing(image, 0.5, (0.02, 0.33),
                                                      rng), n=400)
  erased = [np.mean(out != 128) for out in outs]
  rate = np.mean([e > 0 for e in erased])
  assert 0.43 < rate < 0.57  # 0.5 within 3 standard deviations
  areas = [e for e in erased if e > 0]
  # Noise equals 128 for 1 pixel in 256: the area is read from below.
  assert min(areas) >= 0.015 and max(areas) <= 0.34


def test_a_config_without_them_draws_as_before():
  # Off, they draw nothing: the stream of an older config is unchanged.
  config = demo.get_config().data
  image = np.random.default_rng(1).integers(0, 256, (SIDE, SIDE, 1), np.uint8)
  transform = transforms.train_transform(config)
  rng_a, rng_b = np.random.default_rng(3), np.random.default_rng(3)
  out = transform({'image': image, 'label': 0}, rng_a)['image']
  expected = transforms.random_crop(image, config.crop, rng_b)
  if rng_b.random() < 0.5:
    expected = expected[:, ::-1]
  expected = transforms.cutout(expected, config.cutout_holes,
                               config.cutout_length, rng_b)
  np.testing.assert_array_equal(out, expected.astype(np.float32) / 255)
  assert rng_a.random() == rng_b.random()


def test_an_augmented_stream_resumes_from_its_saved_position():
  config = demo.get_config().data
  config.update(threads=1, rotation=15.0, scale=(0.8, 1.2), translation=0.1,
                brightness=0.4, contrast=0.4, gamma=0.5, erasing=0.5)
  source = grain.MapDataset.source(
      [{'image': np.random.default_rng(i).integers(0, 256, (SIDE, SIDE, 1),
                                                   np.uint8), 'label': i % 7}
       for i in range(16)])
  whole = iter(pipeline.train_dataset(source, config, 4, seed=0))
  expected = [next(whole)['image'] for _ in range(6)]
  first = iter(pipeline.train_dataset(source, config, 4, seed=0))
  for _ in range(3):
    next(first)
  state = first.get_state()
  resumed = iter(pipeline.train_dataset(source, config, 4, seed=0))
  resumed.set_state(state)
  for want in expected[3:]:
    np.testing.assert_array_equal(next(resumed)['image'], want)


@pytest.mark.parametrize('key, value', [
    ('data.rotation', 200.0), ('data.scale', (1.2, 0.8)),
    ('data.translation', 0.6), ('data.brightness', 1.0),
    ('data.contrast', -0.1), ('data.gamma', 5.0), ('data.erasing', 1.5),
    ('data.erasing_area', (0.0, 0.3)), ('loss.label_smoothing', 1.0),
    ('loss.logit_adjustment', -1.0), ('selection_metric', 'f1')])
def test_out_of_range_values_name_their_key(key, value):
  config = demo.get_config()
  section, _, name = key.rpartition('.')
  (config[section] if section else config)[name] = value
  with pytest.raises(errors.UserError, match=f'config.{key}='):
    config_check.validate(config)


def test_normalising_by_table_gives_the_formulas_bytes():
  # The RAF-DB recipe's mean and std (configs/effnet_b0_rafdb.py): every
  # level in every channel, in a mirrored (strided) crop as training makes.
  config = ml_collections.ConfigDict({
      'mean': (0.57535914, 0.44928582, 0.40079932),
      'std': (0.20735591, 0.18981615, 0.18132027)})
  every = np.arange(256)
  levels = np.stack([every, every[::-1], every * 7 % 256], -1)[:, None]
  levels = levels.astype(np.uint8)  # (256, 1, 3): each level per channel
  image = np.random.default_rng(0).integers(0, 256, (224, 224, 3), np.uint8)
  for x in (levels, image[:, ::-1], image[..., :1]):
    mean = config.mean[:x.shape[-1]]
    one = ml_collections.ConfigDict({'mean': mean,
                                     'std': config.std[:x.shape[-1]]})
    formula = (x.astype(np.float32) / 255.0 - np.float32(mean)) / np.float32(
        one.std)
    out = transforms.normalize(x, one)
    assert out.dtype == np.float32 and out.shape == x.shape
    assert out.tobytes() == formula.tobytes()
