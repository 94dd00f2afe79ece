"""Speed of the project's models and train step: python -m fer_jax.bench.

For each model and mode (`train`: the jitted `train.train_step` with the
paper's SGD; `infer`: the eval forward pass), warms up, then times steps and
reports the median images/s, XLA's FLOP count per image, the achieved GFLOP/s
and, for scale, this machine's float32 matmul GFLOP/s. Mode `input` times the
training iterator of `--data` with the paper's augmentations (crop 44, flip,
Cutout) for each of `--workers`, to compare with the train step's images/s.

  python -m fer_jax.bench --models=vgg19,uvgg19 --batch=128 --steps=10
  python -m fer_jax.bench --modes=input --data=fer2013 --workers=0,1,2
  python -m fer_jax.bench --json
"""
import functools
import json
import statistics
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from configs import vgg19_fer2013
from fer_jax import models
from fer_jax.data import pipeline
from fer_jax.models import vgg
from fer_jax import train

_MODELS = flags.DEFINE_list('models', ['vgg19', 'uvgg19'], 'Models to time.')
_MODES = flags.DEFINE_list('modes', ['train', 'infer', 'input'],
                           'train, infer and/or input.')
_BATCH = flags.DEFINE_integer('batch', 128, 'Global batch size.')
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
    'reference', False, 'Also time a PyTorch VGG19-BN (needs torch).')

INPUT_SHAPES = {'vgg19': (44, 44, 1), 'uvgg19': (44, 44, 1)}


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


def _flops(jitted, *args):
  cost = jitted.lower(*args).compile().cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost.get('flops', 0.0))


def time_model(name, mode, batch, steps, width=1.0):
  """One benchmark record: images/s, GFLOPs per image, achieved GFLOP/s."""
  config = vgg19_fer2013.get_config()
  config.model.name = name
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
  params = sum(x.size for x in jax.tree.leaves(state.params))
  if mode == 'train':
    step = jax.jit(functools.partial(train.train_step, model=model, tx=tx,
                                     lr_fn=lr_fn))
    key = jax.random.key(1)
    flops = _flops(step, state, batch_data, key)
    seconds = _median_seconds(lambda: step(state, batch_data, key), steps)
  elif mode == 'infer':
    variables = {'params': state.params, 'batch_stats': state.batch_stats}
    forward = jax.jit(lambda v, x: model.apply(v, x, train=False))
    flops = _flops(forward, variables, batch_data['image'])
    seconds = _median_seconds(
        lambda: forward(variables, batch_data['image']), steps)
  else:
    raise ValueError(f"mode {mode!r}: expected 'train' or 'infer'")
  return {
      'name': f'{name}/{mode}', 'model': name, 'mode': mode, 'batch': batch,
      'input': 'x'.join(map(str, shape)), 'params': int(params),
      'width': width, 'img_per_s': batch / seconds,
      'gflops_per_img': flops / batch / 1e9,
      'achieved_gflops': flops / seconds / 1e9,
  }


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


def time_torch_vgg19(mode, batch, steps, width=1.0):
  """The ancestor repository's VGG19-BN in PyTorch, timed the same way."""
  import torch  # pylint: disable=g-import-not-at-top
  from torch import nn as tnn  # pylint: disable=g-import-not-at-top
  layers, cin = [], 1
  for convs, c in vgg.STAGES:
    c = max(1, round(c * width))
    for _ in range(convs):
      layers += [tnn.Conv2d(cin, c, 3, padding=1), tnn.BatchNorm2d(c),
                 tnn.ReLU(inplace=True)]
      cin = c
    layers.append(tnn.MaxPool2d(2, 2))
  model = tnn.Sequential(*layers, tnn.Flatten(), tnn.Dropout(0.5),
                         tnn.Linear(cin, 7))
  optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9,
                              weight_decay=5e-4)
  x = torch.rand(batch, 1, 44, 44)
  y = torch.randint(0, 7, (batch,))

  def train_step():
    optimizer.zero_grad()
    tnn.functional.cross_entropy(model(x), y).backward()
    optimizer.step()

  def infer():
    with torch.no_grad():
      model(x)

  model.train(mode == 'train')
  seconds = _median_seconds(train_step if mode == 'train' else infer, steps)
  return {'name': f'torch_vgg19/{mode}', 'model': 'torch_vgg19', 'mode': mode,
          'batch': batch, 'input': '44x44x1', 'width': width,
          'params': sum(p.numel() for p in model.parameters()),
          'img_per_s': batch / seconds, 'gflops_per_img': None,
          'achieved_gflops': None}


def main(argv):
  del argv
  records = [time_model(name, mode, _BATCH.value, _STEPS.value, _WIDTH.value)
             for name in _MODELS.value for mode in _MODES.value
             if mode != 'input']
  if 'input' in _MODES.value:
    # Throughput over many batches: per-batch times only show the buffer.
    records += [time_pipeline(_DATA.value, int(workers), _BATCH.value,
                              max(20, _STEPS.value), _DATA_DIR.value)
                for workers in _WORKERS.value]
  if _REFERENCE.value:
    try:
      import torch  # pylint: disable=g-import-not-at-top,unused-import
    except ImportError:
      print('--reference: torch is not installed; skipped (pip install '
            'torch==2.13.0).')
    else:
      for mode in [m for m in _MODES.value if m != 'input']:
        ref = time_torch_vgg19(mode, _BATCH.value, _STEPS.value, _WIDTH.value)
        ours = [r for r in records if r['model'] == 'vgg19' and
                r['mode'] == mode]
        if ours:
          ref['ours_vs_torch'] = ours[0]['img_per_s'] / ref['img_per_s']
        records.append(ref)
  rate = matmul_gflops()
  if _JSON.value:
    print(json.dumps(records + [{'name': 'matmul', 'achieved_gflops': rate}],
                     indent=1))
    return
  print(f'{jax.devices()[0].platform}: {jax.device_count()} device(s); '
        f'float32 matmul {rate:.0f} GFLOP/s')
  for r in records:
    params = '' if r['params'] is None else f"{r['params']:>11,d} params"
    line = (f"{r['name']:18s} batch {r['batch']:4d} {r['input']:9s} "
            f"{params:18s} {r['img_per_s']:8.1f} img/s")
    if r['gflops_per_img'] is not None:
      line += (f" {r['gflops_per_img']:7.3f} GFLOP/img "
               f"{r['achieved_gflops']:6.1f} GFLOP/s")
    if 'ours_vs_torch' in r:
      line += f"   vgg19 / torch: {r['ours_vs_torch']:.2f}x"
    print(line)


if __name__ == '__main__':
  app.run(main)
