"""Each named shift makes the image it names, on a synthetic face."""
import numpy as np
import pytest

import points
from points import CENTRE, SIDE
from configs import demo
from fer_jax import robustness


def _face():
  """A synthetic face: a grey oval on a darker ground, two dark eyes."""
  ys, xs = np.mgrid[:SIDE, :SIDE]
  image = np.where(((ys - 24) / 20) ** 2 + ((xs - 24) / 15) ** 2 <= 1, 170,
                   60).astype(np.uint8)
  for x in (17, 31):
    image[17:20, x - 1:x + 2] = 20
  return image[..., None]


def _offset(image):
  y, x = points.where(image)
  return np.asarray([y - CENTRE, x - CENTRE])


@pytest.mark.parametrize('name', list(robustness.SHIFTS))
def test_every_shift_keeps_the_image_format_and_changes_the_face(name):
  face = _face()
  out = robustness.SHIFTS[name][0](face)
  assert out.shape == face.shape and out.dtype == np.uint8
  assert not np.array_equal(out, face)
  np.testing.assert_array_equal(out, robustness.SHIFTS[name][0](face))


def test_zooms_move_a_point_away_from_and_towards_the_centre():
  dot = points.dot(24, 40)
  before = _offset(dot)
  # A box 15% tighter: the face fills 1 / 0.85 of the frame.
  np.testing.assert_allclose(_offset(robustness.zoom_in(dot)),
                             before * SIDE / (SIDE - 2 * 4), atol=0.4)
  # 15% looser: 4 px reflected around each side, 56 px shrunk to 48.
  np.testing.assert_allclose(_offset(robustness.zoom_out(dot)),
                             before * SIDE / (SIDE + 2 * 4), atol=0.4)


def test_rotation_turns_a_point_15_degrees_anticlockwise_as_seen():
  out = robustness.rotate(points.dot(24, 40))
  dy, dx = _offset(out)
  before_dy, before_dx = _offset(points.dot(24, 40))
  turn = np.degrees(np.arctan2(dy, dx) - np.arctan2(before_dy, before_dx))
  assert abs(turn + 15) < 1  # image rows grow downwards: up is negative


def test_brightness_scales_and_saturates():
  face = _face()
  np.testing.assert_array_equal(robustness.brighter(face)[0, 0], [84])
  np.testing.assert_array_equal(robustness.brighter(face)[24, 24], [238])
  np.testing.assert_array_equal(robustness.darker(face)[24, 24], [102])
  assert robustness.brighter(np.full((2, 2, 1), 200, np.uint8)).max() == 255


def test_blur_spreads_an_impulse_with_the_stated_sigma():
  impulse = np.zeros((SIDE, SIDE, 1), np.uint8)
  impulse[24, 24] = 255
  out = robustness.blur(impulse)[..., 0].astype(np.float64)
  ys, xs = np.mgrid[:SIDE, :SIDE]
  variance = np.sum(((xs - 24) ** 2) * out) / out.sum()
  assert abs(np.sqrt(variance) - robustness.BLUR_SIGMA) < 0.1


def test_jpeg_keeps_smooth_shading_and_loses_fine_texture():
  smooth = np.tile(np.linspace(50, 200, SIDE).astype(np.uint8)[None, :, None],
                   (SIDE, 1, 1))
  noise = np.random.default_rng(0).integers(0, 256, (SIDE, SIDE, 1),
                                            np.uint8)
  error = lambda a: np.mean(np.abs(robustness.jpeg(a).astype(int) - a))
  assert error(smooth) < 3
  assert error(noise) > 15


def test_low_resolution_loses_detail_finer_than_24_pixels():
  correlation = lambda a: np.corrcoef(
      robustness.low_resolution(a).ravel().astype(float),
      a.ravel().astype(float))[0, 1]
  fine = ((np.indices((SIDE, SIDE)).sum(0) % 2) * 255).astype(np.uint8)
  out = robustness.low_resolution(fine[..., None])
  assert out.std() < 0.2 * fine.std()  # one-pixel detail gone
  coarse = np.kron((np.indices((6, 6)).sum(0) % 2) * 255,
                   np.ones((8, 8))).astype(np.uint8)
  assert correlation(coarse[..., None]) > 0.8  # 8-pixel squares stay


def test_each_shift_says_whether_training_augments_with_it():
  config = demo.get_config().data
  assert not any(seen(config) for _, _, seen in robustness.SHIFTS.values())
  config.update(rotation=15.0, scale=(0.8, 1.2), brightness=0.4)
  seen = {name: s(config) for name, (_, _, s) in robustness.SHIFTS.items()}
  assert seen == {'zoom_in_15': True, 'zoom_out_15': True, 'rotate_15': True,
                  'brighter_40': True, 'darker_40': True,
                  'blur_sigma1': False, 'jpeg_q30': False,
                  'low_res_24': False}
