import grain
import numpy as np

from configs import demo
from fer_jax.data import pipeline
from fer_jax.data import transforms


def _source(n):
  """Images whose every pixel holds the example's index, labels index % 7."""
  return grain.MapDataset.source(
      [{'image': np.full((48, 48, 1), i, np.uint8), 'label': i % 7}
       for i in range(n)])


def _data_config(**overrides):
  config = demo.get_config().data
  config.threads = 1
  config.update(overrides)
  return config


def test_ten_crop_is_four_corners_centre_and_their_mirrors():
  image = np.arange(6 * 6).reshape(6, 6, 1)
  crops = transforms.ten_crop(image, 4)
  assert crops.shape == (10, 4, 4, 1)
  np.testing.assert_array_equal(crops[0], image[:4, :4])
  np.testing.assert_array_equal(crops[3], image[2:, 2:])
  np.testing.assert_array_equal(crops[4], image[1:5, 1:5])
  np.testing.assert_array_equal(crops[5:], crops[:5, :, ::-1])


def test_cutout_zeroes_a_square_clipped_at_the_border():
  rng = np.random.default_rng(0)
  image = np.ones((44, 44, 1), np.uint8)
  sizes = set()
  for _ in range(50):
    out = transforms.cutout(image, 1, 16, rng)
    rows, cols = np.nonzero(out[..., 0] == 0)
    sizes.add((np.ptp(rows) + 1, np.ptp(cols) + 1))
    assert out[rows.min():rows.max() + 1, cols.min():cols.max() + 1].sum() == 0
  assert (16, 16) in sizes
  assert max(max(s) for s in sizes) == 16
  assert min(min(s) for s in sizes) < 16  # clipped at a border
  assert image.min() == 1  # the input is left as it was


def test_eval_dataset_counts_every_image_once_and_masks_padding():
  batches = list(pipeline.eval_dataset(_source(10), _data_config(), 4))
  assert len(batches) == 3
  images = np.concatenate([b['image'] for b in batches])
  mask = np.concatenate([b['mask'] for b in batches])
  assert images.shape == (12, 10, 44, 44, 1)
  np.testing.assert_array_equal(mask, [True] * 10 + [False] * 2)
  # Pixel values are the index / 255: each example exactly once, in order.
  np.testing.assert_allclose(images[:10, 0, 0, 0, 0] * 255, np.arange(10),
                             atol=1e-4)


def test_train_dataset_is_seeded_and_reshuffles_each_epoch():
  config = _data_config(cutout_holes=0)

  def first_batches(seed, n=2):
    it = iter(pipeline.train_dataset(_source(8), config, 8, seed))
    return [next(it) for _ in range(n)]

  a, b = first_batches(0), first_batches(0)
  np.testing.assert_array_equal(a[0]['image'], b[0]['image'])
  epoch1 = np.round(a[0]['image'][:, 0, 0, 0] * 255)
  epoch2 = np.round(a[1]['image'][:, 0, 0, 0] * 255)
  assert sorted(epoch1) == sorted(epoch2) == list(range(8))
  assert not np.array_equal(epoch1, epoch2)
  np.testing.assert_array_equal(a[0]['label'], epoch1.astype(int) % 7)
  other = first_batches(1)[0]['image'][:, 0, 0, 0]
  assert not np.array_equal(np.round(other * 255), epoch1)


def test_train_transform_crops_flips_and_scales_to_unit_range():
  config = _data_config(cutout_holes=0)
  image = np.tile(np.arange(48, dtype=np.uint8)[None, :, None], (48, 1, 1))
  transform = transforms.train_transform(config)
  flips = set()
  for seed in range(20):
    out = transform({'image': image, 'label': 3}, np.random.default_rng(seed))
    assert out['image'].shape == (44, 44, 1)
    assert out['image'].dtype == np.float32
    row = np.round(out['image'][0, :, 0] * 255)
    flips.add(bool(row[0] > row[-1]))
    assert np.all(np.abs(np.diff(row)) == 1)
  assert flips == {True, False}


def test_holdout_is_the_head_of_train_and_left_out_of_training(data_dir):
  builder = pipeline.get_builder('fer_synth/small', data_dir)
  config = _data_config(holdout=100, train_split='train')
  train = builder.split_source('train', config)
  holdout = builder.split_source('holdout', config)
  assert (len(train), len(holdout)) == (412, 100)
  train_images = {train[i]['image'].tobytes() for i in range(len(train))}
  assert not any(holdout[i]['image'].tobytes() in train_images
                 for i in range(len(holdout)))


def test_resized_crops_train_on_scaled_areas_and_test_on_the_whole_image():
  config = _data_config(augment='resized_crop', crop=32, cutout_holes=0,
                        crop_scale=(0.25, 0.25), flip=False, eval_crop='centre',
                        mean=(0.5, 0.25, 0.0), std=(0.5, 0.25, 1.0))
  # A horizontal ramp: a crop of a quarter of the area spans about half of
  # the ramp's range, the whole image all of it.
  image = np.tile(np.linspace(0, 255, 100).astype(np.uint8)[None, :, None],
                  (100, 1, 3))
  out = transforms.train_transform(config)({'image': image, 'label': 0},
                                         np.random.default_rng(0))
  assert out['image'].shape == (32, 32, 3)
  raw = out['image'][..., 0] * 0.5 + 0.5  # undo the per-channel normalising
  assert 0.3 < raw.max() - raw.min() < 0.75
  test = transforms.eval_transform(config)({'image': image, 'label': 0})
  raw = test['image'][..., 0] * 0.5 + 0.5
  assert test['image'].shape == (32, 32, 3) and raw.max() - raw.min() > 0.95
  np.testing.assert_allclose(test['image'][..., 2], raw, atol=1e-6)
