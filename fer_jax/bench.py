"""Speed of the project's models and train step: python -m fer_jax.bench.

For each model and mode (`train`: the jitted `train.train_step` with the
paper's SGD; `ldl`: the same step with label distribution learning, its
teacher's forward pass included: a ResNet-50 for 224x224 models, as
EfficientFace's, VGG19 at 1/4 width (the shipped model's) for 44x44 ones;
`infer`: the eval forward pass), warms up, then times steps and
reports the median images/s, the FLOPs per image of its convolutions and
dense layers (2 per multiply-add, x3 in training), the achieved GFLOP/s
and, for scale, this machine's float32 matmul GFLOP/s. Mode `input` times the
training iterator of `--data` with the paper's augmentations (crop 44, flip,
Cutout) for each of `--workers`, to compare with the train step's images/s.

  python -m fer_jax.bench --models=vgg19,uvgg19 --batch=128 --steps=10
  python -m fer_jax.bench --models=efficientnet_b0 --reference
  python -m fer_jax.bench --models=vgg19 --width=0.125 --modes=train,ldl
  python -m fer_jax.bench --modes=input --data=fer2013 --workers=0,1,2
  python -m fer_jax.bench --modes=predict   # the shipped model on faces
  python -m fer_jax.bench --summary   # parameters and GMACs beside the papers'
  python -m fer_jax.bench --json

`--reference` also times, in the same run, PyTorch's version of the same
model where there is one (a VGG19-BN written here; efficientnet-pytorch's
EfficientNet-B0), with the ratio. Each model runs at its own input size and,
unless --batch is given, its own batch (128 at 44x44x1, 32 at 224x224x3).
"""
import functools
import json
import os
import statistics
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from configs import vgg19_fer2013
from fer_jax import hugepages
from fer_jax import models
from fer_jax import teacher as teacher_lib
from fer_jax.data import pipeline
from fer_jax.models import cpu_conv
from fer_jax.models import vgg
from fer_jax import train

_MODELS = flags.DEFINE_list(
    'models', ['vgg19', 'uvgg19', 'efficientnet_b0', 'resnet50'],
    'Models to time.')
_MODES = flags.DEFINE_list('modes', ['train', 'infer', 'input'],
                           'train, ldl, infer, input and/or predict (the '
                           'shipped model, batch 1 and 64).')
_BATCH = flags.DEFINE_integer('batch', None,
                              'Global batch size; default per model.')
_STEPS = flags.DEFINE_integer('steps', 10, 'Timed steps (after warm-up).')
_WIDTH = flags.DEFINE_float('width', 1.0, 'Channel width multiplier.')
_JSON = flags.DEFINE_bool('json', False, 'Print a JSON list of records.')
_DATA = flags.DEFINE_string('data', 'fer_synth',
                            'Dataset whose training iterator --modes=input '
                            'times.')
_DATA_DIR = flags.DEFINE_string('data_dir', None, 'TFDS data_dir of --data.')
_WORKERS = flags.DEFINE_list('workers', ['0', '2'],
                             'grain worker processes to time --modes=input '
                             'with.')
_REFERENCE = flags.DEFINE_bool(
    'reference', False, 'Also time the PyTorch reference models (needs '
    'torch; efficientnet-pytorch for EfficientNet-B0).')
_SUMMARY = flags.DEFINE_bool(
    'summary', False, 'Only print parameters and multiply-adds per image.')

INPUT_SHAPES = {'vgg19': (44, 44, 1), 'uvgg19': (44, 44, 1),
                'efficientnet_b0': (224, 224, 3), 'resnet50': (224, 224, 3)}
BATCHES = {'vgg19': 128, 'uvgg19': 128, 'efficientnet_b0': 32,
           'resnet50': 32}
# The papers' figures for each model and what they count (--summary).
PAPERS = {
    'vgg19': ('140.1M (U-VGG19 paper, Table 4: ImageNet VGG19 at 224x224x3 '
              'with its 4096-4096-1000 head, not the 44x44x1 baseline)',
              False),
    'uvgg19': ('20.7M (U-VGG19 paper, at 44x44x1)', False),
    'efficientnet_b0': ('5.3M, 0.39 GMACs (EfficientNet study, Table 2: the '
                        'ImageNet model at 224)', True),
    'resnet50': ('25.6M, 4.1 GMACs (EfficientNet study, Table 2: the '
                 'ImageNet model at 224)', True),
}
# The teacher `--modes=ldl` runs, by input size.
TEACHERS = {(44, 44, 1): {'name': 'vgg19', 'width': 0.25},
            (224, 224, 3): {'name': 'resnet50'}}


def _median_seconds(fn, steps):
  jax.block_until_ready(fn())  # warm-up, compilation included
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def matmul_gflops(n=2048, steps=5):
  """This machine's float32 matmul rate, the yardstick for the others."""
  a = jnp.ones((n, n), jnp.float32)
  matmul = jax.jit(lambda a: a @ a)
  return 2 * n**3 / _median_seconds(lambda: matmul(a), steps) / 1e9


def time_model(name, mode, batch, steps, width=1.0):
  """One benchmark record: images/s, GFLOPs per image, achieved GFLOP/s."""
  config = vgg19_fer2013.get_config()
  config.model = ml_collections.ConfigDict({'name': name})
  if width != 1.0:
    config.model.width = width
  model = models.create(config.model, num_classes=7)
  shape = INPUT_SHAPES[name]
  mesh = jax.sharding.Mesh(jax.devices(), ('data',))
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  lr_fn = train.learning_rate_fn(config, steps_per_epoch=100)
  tx = train.create_optimizer(config, lr_fn)
  state = train.create_train_state(model, tx, shape, jax.random.key(0),
                                   replicated)
  rng = np.random.default_rng(0)
  batch_data = {
      'image': jnp.asarray(rng.random((batch, *shape), np.float32)),
      'label': jnp.asarray(rng.integers(0, 7, batch), jnp.int32)}
  params, macs = models.macs_per_image(model, shape)
  # Counted, not XLA's cost analysis, which misses the CPU weight gradient's
  # loop: 2 FLOPs a multiply-add; training does it 3 times (forward, input
  # and weight gradients).
  flops = 2 * macs * batch * (1 if mode == 'infer' else 3)
  if mode in ('train', 'ldl'):
    teacher, teacher_variables = None, None
    if mode == 'ldl':
      teacher_model = models.create(
          ml_collections.ConfigDict(TEACHERS[shape]), 7)
      teacher_variables = jax.jit(functools.partial(
          teacher_model.init, train=False))(jax.random.key(2),
                                            jnp.zeros((1, *shape)))
      teacher = teacher_lib.Teacher(
          model=teacher_model, variables=teacher_variables,
          order=np.arange(7), scale=None, shift=None, identity={})
      flops += 2 * models.macs_per_image(teacher_model, shape)[1] * batch
    step = jax.jit(functools.partial(train.train_step, model=model, tx=tx,
                                     lr_fn=lr_fn, teacher=teacher,
                                     ldl_config=config.ldl),
                   compiler_options=cpu_conv.compiler_options())
    key = jax.random.key(1)
    seconds = _median_seconds(
        lambda: step(state, batch_data, key, teacher_variables), steps)
  elif mode == 'infer':
    variables = {'params': state.params, 'batch_stats': state.batch_stats}
    forward = jax.jit(lambda v, x: model.apply(v, x, train=False),
                      compiler_options=cpu_conv.compiler_options())
    seconds = _median_seconds(
        lambda: forward(variables, batch_data['image']), steps)
  else:
    raise ValueError(f"mode {mode!r}: expected 'train', 'ldl' or 'infer'")
  return {
      'name': f'{name}/{mode}', 'model': name, 'mode': mode, 'batch': batch,
      'input': 'x'.join(map(str, shape)), 'params': int(params),
      'width': width, 'img_per_s': batch / seconds,
      'gflops_per_img': flops / batch / 1e9,
      'achieved_gflops': flops / seconds / 1e9,
  }


def time_predict(batch, steps):
  """The shipped model through `Predictor.probabilities`, as photos go:
  faces of 120x120 px (resized, ten-cropped, then the model)."""
  from fer_jax import predict  # pylint: disable=g-import-not-at-top
  predictor = predict.Predictor.pretrained()
  faces = list(np.random.default_rng(0).integers(
      0, 256, (batch, 120, 120, 3), np.uint8))
  seconds = _median_seconds(lambda: predictor.probabilities(faces), steps)
  return {'name': f'predict/shipped/batch={batch}', 'model': 'shipped',
          'mode': 'predict', 'batch': batch, 'input': '120x120x3',
          'params': None, 'img_per_s': batch / seconds,
          'latency_ms': 1000 * seconds, 'gflops_per_img': None,
          'achieved_gflops': None}


def time_pipeline(dataset, workers, batch, steps, data_dir=None):
  """Images/s the training iterator delivers with the paper's augmentations."""
  config = vgg19_fer2013.get_config().data
  config.name, config.data_dir, config.workers = dataset, data_dir, workers
  iterator = iter(pipeline.load(config, batch, batch, seed=0).train)
  next(iterator)  # warm-up: starts the workers and fills the prefetch buffer
  start = time.perf_counter()
  for _ in range(steps):
    next(iterator)
  seconds = time.perf_counter() - start
  return {'name': f'input/{dataset}/workers={workers}', 'model': None,
          'mode': 'input', 'batch': batch,
          'input': 'x'.join(map(str, INPUT_SHAPES['vgg19'])), 'params': None,
          'workers': workers, 'img_per_s': steps * batch / seconds,
          'gflops_per_img': None, 'achieved_gflops': None}


def _torch_vgg19(width):
  """The ancestor repository's VGG19-BN in PyTorch."""
  from torch import nn as tnn  # pylint: disable=g-import-not-at-top
  layers_, cin = [], 1
  for convs, c in vgg.STAGES:
    c = max(1, round(c * width))
    for _ in range(convs):
      layers_ += [tnn.Conv2d(cin, c, 3, padding=1), tnn.BatchNorm2d(c),
                  tnn.ReLU(inplace=True)]
      cin = c
    layers_.append(tnn.MaxPool2d(2, 2))
  return tnn.Sequential(*layers_, tnn.Flatten(), tnn.Dropout(0.5),
                        tnn.Linear(cin, 7))


def _torch_efficientnet_b0(width):
  del width
  from efficientnet_pytorch import EfficientNet  # pylint: disable=g-import-not-at-top
  return EfficientNet.from_name('efficientnet-b0', num_classes=7)


TORCH_REFERENCES = {'vgg19': ('torch_vgg19', _torch_vgg19),
                    'efficientnet_b0': ('efficientnet_pytorch',
                                        _torch_efficientnet_b0)}


def time_torch(name, mode, batch, steps, width=1.0):
  """PyTorch's version of model `name`, timed the same way (SGD as ours)."""
  import torch  # pylint: disable=g-import-not-at-top
  label, build = TORCH_REFERENCES[name]
  model = build(width)
  optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9,
                              weight_decay=5e-4)
  h, w, c = INPUT_SHAPES[name]
  x = torch.rand(batch, c, h, w)
  y = torch.randint(0, 7, (batch,))

  def train_step():
    optimizer.zero_grad()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    optimizer.step()

  def infer():
    with torch.no_grad():
      model(x)

  model.train(mode == 'train')
  seconds = _median_seconds(train_step if mode == 'train' else infer, steps)
  return {'name': f'{label}/{mode}', 'model': label, 'mode': mode,
          'batch': batch, 'input': 'x'.join(map(str, INPUT_SHAPES[name])),
          'width': width,
          'params': sum(p.numel() for p in model.parameters()),
          'img_per_s': batch / seconds, 'gflops_per_img': None,
          'achieved_gflops': None}


def main(argv):
  del argv
  if _SUMMARY.value:
    for name in _MODELS.value:
      params, macs = models.macs_per_image(
          models.create(ml_collections.ConfigDict({'name': name}), 7),
          INPUT_SHAPES[name])
      line = (f"{name:16s} {'x'.join(map(str, INPUT_SHAPES[name])):12s} "
              f'{params:>12,d} params (7 classes) {macs / 1e9:7.3f} '
              'GMACs/image')
      paper, imagenet_head = PAPERS[name]
      if imagenet_head:  # the papers count the 1000-class ImageNet model
        line += ' ({:,d} with 1000 classes)'.format(models.macs_per_image(
            models.create(ml_collections.ConfigDict({'name': name}), 1000),
            INPUT_SHAPES[name])[0])
      print(f'{line}; paper: {paper}')
    return
  batch = lambda name: _BATCH.value or BATCHES[name]
  modes = [m for m in _MODES.value if m not in ('input', 'predict')]
  records = [time_model(name, mode, batch(name), _STEPS.value, _WIDTH.value)
             for name in _MODELS.value for mode in modes]
  if 'input' in _MODES.value:
    # Throughput over many batches: per-batch times only show the buffer.
    records += [time_pipeline(_DATA.value, int(workers),
                              _BATCH.value or BATCHES['vgg19'],
                              max(20, _STEPS.value), _DATA_DIR.value)
                for workers in _WORKERS.value]
  if 'predict' in _MODES.value:
    records += [time_predict(batch, _STEPS.value) for batch in (1, 64)]
  if _REFERENCE.value:
    for name in [n for n in _MODELS.value if n in TORCH_REFERENCES]:
      try:
        references = [time_torch(name, mode, batch(name), _STEPS.value,
                                 _WIDTH.value)
                      for mode in modes if mode in ('train', 'infer')]
      except ImportError as e:
        print(f'--reference for {name}: skipped ({e}; see '
              'requirements-test.txt)')
        continue
      for ref in references:
        ours = [r for r in records if r['model'] == name and
                r['mode'] == ref['mode']]
        ref['ours_vs_torch'] = ours[0]['img_per_s'] / ref['img_per_s']
        records.append(ref)
  rate = matmul_gflops()
  tunables = os.environ.get('GLIBC_TUNABLES')
  if _JSON.value:
    print(json.dumps(records + [{'name': 'matmul', 'achieved_gflops': rate,
                                 'glibc_tunables': tunables}], indent=1))
    return
  print(f'{jax.devices()[0].platform}: {jax.device_count()} device(s); '
        f'float32 matmul {rate:.0f} GFLOP/s; GLIBC_TUNABLES={tunables}')
  for r in records:
    params = '' if r['params'] is None else f"{r['params']:>11,d} params"
    line = (f"{r['name']:26s} batch {r['batch']:4d} {r['input']:9s} "
            f"{params:18s} {r['img_per_s']:8.1f} img/s")
    if r['gflops_per_img'] is not None:
      line += (f" {r['gflops_per_img']:7.3f} GFLOP/img "
               f"{r['achieved_gflops']:6.1f} GFLOP/s")
    if 'latency_ms' in r:
      line += f"   {r['latency_ms']:.1f} ms a call"
    if 'ours_vs_torch' in r:
      line += f"   ours / this: {r['ours_vs_torch']:.2f}x"
    print(line)


if __name__ == '__main__':
  hugepages.reexec()
  app.run(main)
