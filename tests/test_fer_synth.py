import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from fer_jax.data import fer_synth
from fer_jax.data import pipeline


def _arrays(split, size):
  examples = list(fer_synth.generate_split(split, size))
  images = np.stack([image.reshape(-1) for _, image, _ in examples]) / 255.0
  return images, np.array([label for _, _, label in examples])


@pytest.mark.filterwarnings('ignore:lbfgs failed to converge')
def test_logistic_regression_on_pixels_scores_at_most_60_percent():
  train_x, train_y = _arrays('train', 6000)
  test_x, test_y = _arrays('test', 1500)
  scaler = StandardScaler().fit(train_x)
  # C=0.01 scored highest of the values tried (1.0: 29%, 0.01: 35%).
  model = LogisticRegression(C=0.01, max_iter=100).fit(
      scaler.transform(train_x), train_y)
  accuracy = model.score(scaler.transform(test_x), test_y)
  assert 1 / 7 < accuracy <= 0.60


def test_generation_is_deterministic_for_a_seed():
  first = [image for _, image, _ in fer_synth.generate_split('test', 20)]
  again = [image for _, image, _ in fer_synth.generate_split('test', 20)]
  other = [image for _, image, _ in fer_synth.generate_split('test', 20,
                                                             seed=1)]
  np.testing.assert_array_equal(first, again)
  assert not np.array_equal(first, other)


def test_class_proportions_follow_fer2013_train():
  counts = np.bincount(fer_synth.split_labels(6000, 0), minlength=7)
  assert counts.sum() == 6000
  expected = np.array(fer_synth.FER2013_TRAIN_COUNTS) / 28709 * 6000
  # Rounding down leaves at most 6 images over, given to the largest class.
  np.testing.assert_allclose(counts, expected, atol=7)
  assert counts.argmin() == fer_synth.CLASS_NAMES.index('disgust')
  assert counts.argmax() == fer_synth.CLASS_NAMES.index('happy')


def test_builder_writes_array_record_that_reads_back(data_dir):
  builder = pipeline.get_builder('fer_synth/small', data_dir)
  source = builder.as_data_source(split='validation')
  assert len(source) == 128
  example = source[0]
  assert example['image'].shape == (48, 48, 1)
  assert example['image'].dtype == np.uint8
  assert builder.info.features['label'].names == list(fer_synth.CLASS_NAMES)
  generated = {image.tobytes(): label for _, image, label in
               fer_synth.generate_split('validation', 128)}
  assert all(generated[source[i]['image'].tobytes()] == source[i]['label']
             for i in range(len(source)))
