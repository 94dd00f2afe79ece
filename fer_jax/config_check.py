"""Every check of a config, each naming its key and what was expected.

`validate` runs before anything is read or built, so that a bad value stops
a run at once with one line (`tests/test_train.py::
test_bad_config_value_names_the_key`); `check_data` adds the rules that need
the dataset's image shape, and runs when the dataset is opened. A model's
own fields are checked by building the model (`models.create`), beside
their definitions.
"""
import functools
import numbers

import jax
import numpy as np

from fer_jax import errors
from fer_jax import ldl
from fer_jax import models

OPTIMIZERS = ('sgd', 'adam')
SCHEDULES = ('constant', 'step', 'cosine')
AUGMENTS = ('crop', 'resized_crop')
CLASS_WEIGHTS = ('none', 'inverse_frequency')
SELECTION_METRICS = ('accuracy', 'balanced_accuracy')


def _require(config, key, ok, expected):
  value = functools.reduce(lambda c, k: c[k], key.split('.'), config)
  if not ok(value):
    raise errors.UserError(f'config.{key}={value!r}: expected {expected}')


def _integer(value):
  return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _number(value):
  return (isinstance(value, numbers.Real) and not isinstance(value, bool)
          and np.isfinite(value))


def validate(config, training=True):
  """Rejects values that would fail deep inside or silently change training,
  with the key and what was expected (`test_train.py::
  test_bad_config_value_names_the_key`). Evaluation selects with the saved
  run's selection split, so its own may be missing from its eval splits."""
  for key in ('batch_size', 'eval_batch_size', 'epochs', 'log_every',
              'keep_checkpoints', 'data.crop', 'data.threads'):
    _require(config, key, lambda v: _integer(v) and v > 0,
             'a positive integer')
  for key in ('data.holdout', 'data.workers', 'data.cutout_holes',
              'data.cutout_length'):
    _require(config, key, lambda v: _integer(v) and v >= 0,
             'an integer >= 0')
  if config.data.cutout_holes:
    _require(config, 'data.cutout_length', lambda v: v > 0,
             'a positive side length when config.data.cutout_holes > 0')
  _require(config, 'data.crop_scale',
           lambda v: (isinstance(v, (tuple, list)) and len(v) == 2
                      and all(map(_number, v)) and 0 < v[0] <= v[1] <= 1),
           '(low, high) with 0 < low <= high <= 1')
  _require(config, 'optimizer.lr', lambda v: _number(v) and v > 0,
           'a positive number')
  _require(config, 'optimizer.momentum', lambda v: _number(v) and 0 <= v < 1,
           'a number in [0, 1)')
  for key in ('optimizer.weight_decay', 'optimizer.clip'):
    _require(config, key, lambda v: _number(v) and v >= 0, 'a number >= 0')
  if config.schedule.name == 'step':
    _require(config, 'schedule.decay_every', lambda v: _integer(v) and v > 0,
             'a positive number of epochs')
    _require(config, 'schedule.decay_start', lambda v: _integer(v) and v >= 0,
             'an epoch >= 0')
    _require(config, 'schedule.decay_rate', lambda v: _number(v) and 0 < v <= 1,
             'a factor in (0, 1]')
  for key in ('batch_size', 'eval_batch_size'):
    if config[key] % jax.device_count():
      raise errors.UserError(
          f'config.{key}={config[key]} does not divide by the '
          f'{jax.device_count()} devices: the batch size is global')
  _require(config, 'dtype', lambda v: v in models.DTYPES,
           f'one of {models.DTYPES}')
  _require(config, 'data.eval_crop', lambda v: v in ('ten', 'centre'),
           "'ten' or 'centre'")
  if config.data.augment == 'resized_crop' and config.data.eval_crop == 'ten':
    # Evaluation resizes the whole image to the crop size first
    # (transforms.eval_transform): its ten crops are one view and its mirror.
    raise errors.UserError(
        "config.data.eval_crop='ten': with config.data.augment="
        "'resized_crop' the test image is resized to the crop, so ten crops "
        "would be one view and its mirror, five times; use 'centre'")
  _require(config, 'data.extra_train', lambda v: isinstance(v, (
      tuple, list)) and all(isinstance(n, str) and n for n in v),
           'a tuple of stylised dataset names')
  _require(config, 'ldl.teacher', lambda v: v is None or (
      isinstance(v, str) and v), 'None or the path of a teacher')
  # Hinton's distillation at T > 1 also divides the student's logits by T
  # and scales the loss by T^2; the loss here (EfficientFace's, T = 1) does
  # neither, so another T would be neither recipe.
  _require(config, 'ldl.temperature', lambda v: v == 1,
           "1 (EfficientFace's; Hinton's T > 1 would also need the "
           "student's logits divided by T and the loss scaled by T^2)")
  _require(config, 'ldl.onehot_weight', lambda v: _number(v) and 0 <= v <= 1,
           'a weight (lambda) in [0, 1]')
  _require(config, 'ldl.reduction', lambda v: v in ldl.REDUCTIONS,
           f'one of {ldl.REDUCTIONS}')
  _require(config, 'selection_metric', lambda v: v in SELECTION_METRICS,
           f'one of {SELECTION_METRICS}')
  _check_augmentations(config)
  _check_loss(config)
  _require(config, 'optimizer.name', lambda v: v in OPTIMIZERS,
           f'one of {OPTIMIZERS}')
  _require(config, 'schedule.name', lambda v: v in SCHEDULES,
           f'one of {SCHEDULES}')
  _require(config, 'data.augment', lambda v: v in AUGMENTS,
           f'one of {AUGMENTS}')
  _require(config, 'data.class_weights', lambda v: v in CLASS_WEIGHTS,
           f'one of {CLASS_WEIGHTS}')
  # The model's own fields (name, width, activation, ...) are checked by
  # building it, so that each rule is stated once, beside the field.
  models.create(config.model, 2, config.dtype)
  selection = config.selection_split
  if training and selection and selection not in config.data.eval_splits:
    raise errors.UserError(
        f'config.selection_split={selection!r}: not one of '
        f'config.data.eval_splits={tuple(config.data.eval_splits)}')


def _range(low, high):
  return lambda v: (isinstance(v, (tuple, list)) and len(v) == 2
                    and all(map(_number, v)) and low < v[0] <= v[1] <= high)


def _check_augmentations(config):
  _require(config, 'data.rotation', lambda v: _number(v) and 0 <= v <= 180,
           'degrees in [0, 180]')
  _require(config, 'data.scale', _range(0, 10),
           '(low, high) with 0 < low <= high <= 10')
  _require(config, 'data.translation', lambda v: _number(v) and 0 <= v <= 0.5,
           'a fraction of the side in [0, 0.5]')
  for key in ('data.brightness', 'data.contrast'):
    _require(config, key, lambda v: _number(v) and 0 <= v < 1,
             'a relative change in [0, 1)')
  _require(config, 'data.gamma', lambda v: _number(v) and 0 <= v <= 4,
           'a number in [0, 4] (gamma in [1/(1+g), 1+g])')
  _require(config, 'data.erasing', lambda v: _number(v) and 0 <= v <= 1,
           'a probability in [0, 1]')
  _require(config, 'data.erasing_area', _range(0, 0.999),
           '(low, high) fractions of the image with 0 < low <= high < 1')


def _check_loss(config):
  _require(config, 'loss.label_smoothing', lambda v: _number(v) and 0 <= v < 1,
           'a number in [0, 1)')
  _require(config, 'loss.logit_adjustment', lambda v: _number(v) and v >= 0,
           'tau >= 0')
  if config.ldl.teacher:
    for key in ('label_smoothing', 'logit_adjustment'):
      if config.loss[key]:
        raise errors.UserError(
            f'config.loss.{key}={config.loss[key]!r}: applies to one-hot '
            'labels, and config.ldl.teacher replaces them with its '
            'distributions; set one of the two')


def _check_normalisation(data_config, channels):
  """mean and std: both None, or `channels` finite values each, std > 0."""
  mean, std = data_config.get('mean'), data_config.get('std')
  if (mean is None) != (std is None):
    raise errors.UserError(
        f'config.data.mean={mean!r}, config.data.std={std!r}: give both or '
        'neither')
  for key, values in (('mean', mean), ('std', std)):
    if values is None:
      continue
    if (not isinstance(values, (tuple, list)) or len(values) != channels
        or not all(_number(v) and (key == 'mean' or v > 0) for v in values)):
      raise errors.UserError(
          f'config.data.{key}={values!r}: expected {channels} finite '
          f'value(s), one per channel of {data_config.name!r}'
          + (', each > 0' if key == 'std' else ''))


def check_data(data_config, image_shape):
  """The rules that need the stored images' (H, W, C)."""
  if data_config.augment == 'crop' and data_config.crop > min(
      image_shape[:2]):
    raise errors.UserError(
        f'config.data.crop={data_config.crop}: larger than the '
        f'{tuple(image_shape[:2])} images of {data_config.name!r}')
  _check_normalisation(data_config, image_shape[-1])
