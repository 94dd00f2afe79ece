"""The frozen teacher of label distribution learning (`config.ldl.teacher`).

A teacher is any trained model that says what it expects: a fer_jax
workdir (its selected checkpoint, or its latest without a selection split),
a file exported by `fer_jax.export` (the shipped model, for one), or a
`fer_jax.convert` output with a `data.json` (EfficientFace's LDG records its
own; other converted weights need `--class_names` when converting).

Rules, all checked before any training step (`tests/test_ldl.py`):
- Classes are matched by name: the same names in another order are
  reordered (logged, and the permuted logits are tested to give the same
  targets); other names or another count are refused.
- The input must be what the teacher was trained on: the same crop size,
  channels and crop kind ('crop' / 'resized_crop'), else refused. Its
  normalisation is recomputed from the student's normalised batch, exactly
  (x * std_s + mean_s - mean_t) / std_t, so each model sees its own.
- It runs in inference mode (BatchNorm running statistics, no dropout) on
  the student's augmented batch inside the jitted train step, under
  stop_gradient; its variables are an argument of the step, not constants
  compiled into it.
- Its identity is the SHA-256 of its variables, saved in the student's run
  record with its path and step (for people to read): resuming with another
  teacher is refused, and the same teacher at another path (a moved
  checkout, another mount point per host) is accepted. Evaluating a student
  reports its distances to the teacher when the teacher can be read and is
  the same, and otherwise says why they are omitted.
"""
import dataclasses
import hashlib
import os
from typing import Any

import jax
import ml_collections
import numpy as np

from fer_jax import errors
from fer_jax import models
from fer_jax import weights

# What a teacher expects, as `data.json` of a fer_jax.convert output holds it.
INPUT_FIELDS = ('class_names', 'input_shape', 'augment', 'mean', 'std')


@dataclasses.dataclass(frozen=True, eq=False)
class Teacher:
  """A model with frozen variables, applied to the student's batches."""
  model: Any
  variables: Any  # {'params', 'batch_stats'}, numpy
  order: np.ndarray  # the student's class c is the teacher's logit order[c]
  scale: np.ndarray | None  # teacher input = student input * scale + shift
  shift: np.ndarray | None
  identity: dict  # {'path', 'step', 'checksum'}

  def apply(self, variables, images, train=False):
    """Teacher logits in the student's class order, from images normalised
    as the student's; like a model's `apply`, so evaluation's crop
    averaging takes it."""
    if train:
      raise ValueError('a teacher is frozen: it only runs with train=False')
    if self.scale is not None:
      images = images * self.scale + self.shift
    logits = self.model.apply(variables, images, train=False)
    return jax.lax.stop_gradient(logits[..., self.order])


def checksum(variables):
  """SHA-256 over every array's path, dtype, shape and bytes."""
  digest = hashlib.sha256()
  for path, leaf in jax.tree_util.tree_flatten_with_path(variables)[0]:
    leaf = np.asarray(leaf)
    digest.update(f'{jax.tree_util.keystr(path)} {leaf.dtype} '
                  f'{leaf.shape}'.encode())
    digest.update(np.ascontiguousarray(leaf).tobytes())
  return digest.hexdigest()


def _read(path):
  """(model, numpy variables, expected input, step, what it is) of the
  teacher at path (`weights.load`)."""
  w = weights.load(path, key='config.ldl.teacher')
  if w.expected is None:
    raise errors.UserError(
        f'config.ldl.teacher={path!r}: converted weights without class names '
        '(no data.json); convert again with --class_names=... in the order '
        'of its outputs')
  model = models.create(ml_collections.ConfigDict(w.model), w.num_classes)
  return model, w.variables, w.expected, w.step, w.what


def _normalisation(expected, data_config, channels):
  """(scale, shift) mapping the student's normalised input to the
  teacher's, or (None, None) when they normalise alike."""
  def stats(config):
    mean, std = config.get('mean'), config.get('std')
    if mean is None:
      return np.zeros(channels, np.float64), np.ones(channels, np.float64)
    return np.asarray(mean, np.float64), np.asarray(std, np.float64)
  mean_s, std_s = stats(data_config)
  mean_t, std_t = stats(expected)
  if np.array_equal(mean_s, mean_t) and np.array_equal(std_s, std_t):
    return None, None
  # x_t = (x_s * std_s + mean_s - mean_t) / std_t
  return ((std_s / std_t).astype(np.float32),
          ((mean_s - mean_t) / std_t).astype(np.float32))


def load(path, class_names, input_shape, data_config, log=print):
  """The teacher at `path` for a student of `class_names` whose batches are
  `input_shape` images normalised by `data_config`; refuses a mismatch."""
  where = f'config.ldl.teacher={path!r}'
  model, variables, expected, step, what = _read(path)
  log(f'Teacher: {path}, {what}.')
  theirs, ours = list(expected['class_names']), list(class_names)
  if sorted(theirs) != sorted(ours):
    raise errors.UserError(
        f'{where}: its classes {theirs} are not the dataset\'s {ours}')
  if theirs != ours:
    log(f'Teacher classes reordered by name: its {theirs} to the '
        f"dataset's {ours}.")
  if tuple(expected['input_shape']) != tuple(input_shape):
    raise errors.UserError(
        f'{where}: it takes {tuple(expected["input_shape"])} inputs, the '
        f'student {tuple(input_shape)} (config.data.crop and channels)')
  if expected['augment'] != data_config.augment:
    raise errors.UserError(
        f"{where}: it was trained on config.data.augment="
        f"{expected['augment']!r} inputs, the student feeds "
        f'{data_config.augment!r}')
  channels = input_shape[-1]
  for key in ('mean', 'std'):
    if expected.get(key) is not None and len(expected[key]) != channels:
      raise errors.UserError(f'{where}: its {key} {expected[key]} is not '
                             f'{channels} value(s)')
  scale, shift = _normalisation(expected, data_config, channels)
  if scale is not None:
    log(f"Teacher fed its own normalisation (mean {expected.get('mean')}, "
        f"std {expected.get('std')}).")
  variables = {'params': variables['params'],
               'batch_stats': variables.get('batch_stats', {})}
  return Teacher(
      model=model, variables=variables,
      order=np.asarray([theirs.index(name) for name in ours]),
      scale=scale, shift=shift,
      identity={'path': os.path.abspath(path), 'step': step,
                'checksum': checksum(variables)})


def difference(saved, teacher):
  """Why `teacher` (None: none) is not the teacher of the run record
  `saved` (its 'teacher' entry), or None if it is."""
  now = teacher.identity if teacher else None
  if saved is None or now is None:
    if saved is now:
      return None
    return ('the run was trained without a teacher' if saved is None
            else f"the run was trained with the teacher at {saved['path']}, "
            'and this config has none')
  if saved['checksum'] == now['checksum']:
    return None
  return (f"{now['path']} is not the teacher the run was trained with "
          f"({saved['path']} at step {saved['step']}: other weights, SHA-256 "
          f"{now['checksum'][:12]} against {saved['checksum'][:12]})")


def check_same(saved, teacher, workdir):
  """Refuses to resume a run whose saved teacher identity differs."""
  problem = difference(saved, teacher)
  if problem:
    raise errors.UserError(
        f'{workdir}: {problem}; resume with that teacher, or use another '
        '--workdir')
