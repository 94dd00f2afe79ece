"""What training and evaluation share: `Experiment`, the mesh, the data, the
model and the jitted steps of one config, and the evaluation of variables
over the eval splits.

One code path for one device or many: the state is replicated and the batch
sharded on the `data` axis of a mesh over all devices (of all processes), and
`jax.jit` partitions the step. BatchNorm therefore normalises over the global
batch, as on one device.
"""
import functools

import jax
from jax.experimental import multihost_utils
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import numpy as np
import tqdm

from fer_jax import checkpoint
from fer_jax import config_check
from fer_jax import errors
from fer_jax import ldl
from fer_jax import metrics as metrics_lib
from fer_jax import models
from fer_jax import optim
from fer_jax import steps
from fer_jax import teacher as teacher_lib
from fer_jax.data import pipeline
from fer_jax.data import transforms
from fer_jax.models import cpu_conv


def log_prior(class_counts):
  """log of each class's share of the training images (float32)."""
  counts = np.asarray(class_counts, np.float64)
  return np.log(counts / counts.sum()).astype(np.float32)


def log(message):
  """A line on the console of process 0, above the progress bar."""
  if jax.process_index() == 0:
    tqdm.tqdm.write(message)


class Experiment:
  """What training and evaluation share: mesh, data, model, jitted steps."""

  def __init__(self, config, training=True, count_classes=False):
    """`count_classes`: count the training set's classes (`data.class_counts`)
    even when training does not need them (post-hoc logit adjustment)."""
    config_check.validate(config, training)
    self.config = config
    self.mesh = Mesh(jax.devices(), ('data',))
    self.replicated = NamedSharding(self.mesh, P())
    self.batch_sharding = NamedSharding(self.mesh, P('data'))
    # Evaluation needs no stylised training copies (nor their files).
    self.data = pipeline.load(config.data, config.batch_size,
                              config.eval_batch_size, config.seed,
                              extra_train=training,
                              count_classes=count_classes or bool(
                                  config.loss.logit_adjustment))
    self.steps_per_epoch = self.data.train_size // config.batch_size
    if not self.steps_per_epoch:
      raise errors.UserError(
          f'config.batch_size={config.batch_size}: larger than '
          f'the {self.data.train_size} training images')
    self.total_steps = config.epochs * self.steps_per_epoch
    num_classes = len(self.data.class_names)
    self.num_classes = num_classes
    # Menon et al.'s training-time shift: tau * log(training class prior).
    self.logit_shift = None
    if config.loss.logit_adjustment:
      self.logit_shift = (config.loss.logit_adjustment
                          * log_prior(self.data.class_counts))
    self.model = models.create(config.model, num_classes, config.dtype)
    self.lr_fn = optim.learning_rate_fn(config, self.steps_per_epoch)
    self.tx = optim.create_optimizer(config, self.lr_fn)
    teacher = None
    if config.ldl.teacher:
      try:
        teacher = teacher_lib.load(
            config.ldl.teacher, self.data.class_names, self.data.input_shape,
            config.data, log=log)
      except errors.UserError as e:
        if training:
          raise
        log(f'The distances to the teacher are omitted: {e}')
    self.set_teacher(teacher)

  def set_teacher(self, teacher):
    """Takes `teacher` (None: none) for training and evaluation."""
    self.teacher, self.teacher_variables = teacher, None
    if teacher is not None:
      self.teacher_variables = jax.device_put(teacher.variables,
                                              self.replicated)
    self.eval_step = jax.jit(
        functools.partial(steps.eval_step, model=self.model,
                          num_classes=self.num_classes, teacher=teacher,
                          temperature=self.config.ldl.temperature),
        compiler_options=cpu_conv.compiler_options())

  def initial_state(self, abstract=False):
    return steps.create_train_state(
        self.model, self.tx, self.data.input_shape,
        jax.random.key(self.config.seed), self.replicated, abstract)

  def global_batch(self, local_batch):
    return jax.tree.map(
        lambda x: jax.make_array_from_process_local_data(
            self.batch_sharding, x), local_batch)

  def compile_eval_step(self, variables):
    """Compiles `eval_step` ahead of time for the eval splits' batches
    (their shapes from `transforms.eval_transform` of a blank image) and
    `variables`' shapes and shardings; safe to call in a thread, and the
    jitted step's next call finds it compiled."""
    example = transforms.eval_transform(self.config.data)(
        {'image': np.zeros(self.data.image_shape, np.uint8), 'label': 0})
    batch = {k: jax.ShapeDtypeStruct(
        (self.config.eval_batch_size, *np.shape(v)), np.asarray(v).dtype,
        sharding=self.batch_sharding)
             for k, v in dict(example, index=np.int32(0)).items()}
    shift = jax.ShapeDtypeStruct((self.num_classes,), np.float32,
                                 sharding=self.replicated)
    return self.eval_step.lower(checkpoint.specs(variables), batch, shift,
                                self.teacher_variables).compile()

  def evaluate(self, variables, predictions=False, logit_shift=None,
               datasets=None):
    """{split: {'accuracy', 'balanced_accuracy', 'loss', 'confusion'}} over
    every eval split (or each of `datasets`, {name: batches as
    `pipeline.eval_dataset` makes them}), of the logits plus `logit_shift`
    (per class; None: zeros), the post-hoc adjustment of
    `fer_jax.logit_adjustment`.

    With `predictions`, each split's result also holds 'predictions':
    (index in the split, label, probabilities) of every image, in order.
    """
    shift = jax.device_put(
        np.zeros(self.num_classes, np.float32) if logit_shift is None
        else np.asarray(logit_shift, np.float32), self.replicated)
    results = {}
    for split, dataset in (datasets or self.data.evals).items():
      totals, images = None, []
      for batch in dataset:
        batch = self.global_batch(batch)
        out = self.eval_step(variables, batch, shift, self.teacher_variables)
        if predictions:
          images.append({'index': batch['index'], 'label': batch['label'],
                         'mask': batch['mask'],
                         'probabilities': out['probabilities']})
        del out['probabilities']
        totals = out if totals is None else jax.tree.map(jnp.add, totals, out)
      totals = jax.device_get(totals)
      confusion = np.rint(totals['confusion']).astype(int)
      count = max(confusion.sum(), 1)
      results[split] = {
          'accuracy': metrics_lib.accuracy(confusion),
          'balanced_accuracy': metrics_lib.balanced_accuracy(confusion),
          'loss': float(totals['loss'] / count),
          'confusion': confusion.tolist(),
      }
      if self.teacher is not None:  # student against teacher, per image
        results[split].update({name: float(totals[name] / count)
                               for name in ldl.DISTANCES})
      if predictions:
        results[split]['predictions'] = _per_image(images)
    return results

  def checkpoints(self, workdir, read_only=False):
    return checkpoint.manager(workdir, self.config.keep_checkpoints,
                              track_best=bool(self.config.selection_split),
                              read_only=read_only)


def _per_image(batches):
  """[(index, label, probabilities)] sorted by index, padding left out."""
  gathered = multihost_utils.process_allgather(batches, tiled=True)
  rows = [(int(i), int(label), p.tolist())
          for b in gathered
          for i, label, keep, p in zip(b['index'], b['label'], b['mask'],
                                       b['probabilities']) if keep]
  return sorted(rows)
