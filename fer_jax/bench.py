"""Speed of the project's models and train step: python -m fer_jax.bench.

For each model and mode (`train`: the jitted `steps.train_step` with the
paper's SGD; `ldl`: the same step with label distribution learning, its
teacher's forward pass included: a ResNet-50 for 224x224 models, as
EfficientFace's, VGG19 at 1/4 width (the shipped model's) for 44x44 ones;
`infer`: the eval forward pass), warms up, then times steps and
reports the median images/s, the FLOPs per image of its convolutions and
dense layers (2 per multiply-add, x3 in training), the achieved GFLOP/s
and, for scale, this machine's float32 matmul GFLOP/s. Mode `input` times the
training iterator of `--data` with the paper's augmentations (crop 44, flip,
Cutout) for each of `--workers`, to compare with the train step's images/s,
and the RAF-DB recipe at 224 pixels with the cores it would take to feed a
GPU (`fer_jax.bench_input`).

  python -m fer_jax.bench --models=vgg19,uvgg19 --batch=128 --steps=10
  python -m fer_jax.bench --models=efficientnet_b0 --reference
  python -m fer_jax.bench --models=vgg19 --width=0.125 --modes=train,ldl
  python -m fer_jax.bench --modes=input --data=fer2013 --workers=0,1,2
  python -m fer_jax.bench --modes=predict   # the shipped model on faces
  python -m fer_jax.bench --modes=video     # predict on a 640x480 clip
  python -m fer_jax.bench --summary   # parameters and GMACs beside the papers'
  python -m fer_jax.bench --json

`--reference` also times, in the same run, PyTorch's version of the same
model where there is one (a VGG19-BN written here; efficientnet-pytorch's
EfficientNet-B0), with the ratio. Each model runs at its own input size and,
unless --batch is given, its own batch (128 at 44x44x1, 32 at 224x224x3).

Everything timed is compiled first, then timed in `--rounds` interleaved
rounds of `--steps` steps each, and each figure is the median over the
rounds: on 2 noisy cores a 1.0x threshold needs that, not one sample
(`--rounds=1` is one sample). Several widths in one run (or one with
`--reference`) end with a table of VGG19 against PyTorch and U-VGG19
against VGG19 at each width; each ratio there is the median over the rounds
of the two steps' ratio within a round, where they run next to each other
(each model, then PyTorch's version, for each width and mode), so that the
machine's slow spells, which last from seconds to minutes here, move it less,

  python -m fer_jax.bench --models=vgg19,uvgg19 --modes=train,infer \
      --batch=128 --width=1,0.25,0.125 --reference --rounds=5

and `--dtypes=float32,bfloat16` times both precisions (`config.dtype`; on
CPU bfloat16 is emulated, so its figures only say that it runs).
"""
import functools
import json
import os
import statistics

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from fer_jax import bench_input
from fer_jax import bench_kernels
from fer_jax import bench_video
from fer_jax import hugepages
from fer_jax import models
from fer_jax import optim
from fer_jax import predict
from fer_jax import steps as steps_lib
from fer_jax import timing
from fer_jax import teacher as teacher_lib
from fer_jax import torch_reference
from fer_jax.models import cpu_conv


def define_flags():
  """The command's flags; defined when it runs, not at import, so that
  other modules with flags of the same names can be imported beside it."""
  flags.DEFINE_list(
      'models', ['vgg19', 'uvgg19', 'efficientnet_b0', 'resnet50'],
      'Models to time.')
  flags.DEFINE_list('modes', ['train', 'infer', 'input'],
                    'train, ldl, infer, input, predict (the shipped '
                    'model, batch 1 and 64) and/or kernels (each CPU '
                    'fast path against XLA\'s, fer_jax.bench_kernels).')
  flags.DEFINE_integer('batch', None,
                       'Global batch size; default per model.')
  flags.DEFINE_integer('steps', 10,
                       'Timed steps a round (after warm-up).')
  flags.DEFINE_integer(
      'rounds', 1, 'Interleaved rounds; each figure is their median.')
  flags.DEFINE_list('width', ['1.0'],
                    'Channel width multipliers, one table row each.')
  flags.DEFINE_list('dtypes', ['float32'],
                    "Activation dtypes (config.dtype) to time.")
  flags.DEFINE_bool('json', False, 'Print a JSON list of records.')
  flags.DEFINE_string('data', 'fer_synth',
                      'Dataset whose training iterator --modes=input '
                      'times.')
  flags.DEFINE_string('data_dir', None, 'TFDS data_dir of --data.')
  flags.DEFINE_list('workers', ['0', '2'],
                    'grain worker processes to time --modes=input '
                    'with.')
  flags.DEFINE_bool(
      'reference', False, 'Also time the PyTorch reference models (needs '
      'torch; efficientnet-pytorch for EfficientNet-B0).')
  flags.DEFINE_bool(
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


def _paper_recipe():
  """The fields of configs/vgg19_fer2013.py that a step or the input
  pipeline depends on (the U-VGG19 paper's recipe: clipping and weight decay
  are part of the step, crop 44, flip and Cutout of the input); the package
  does not import `configs`, and `tests/test_bench.py` checks these against
  it."""
  return ml_collections.ConfigDict({
      'epochs': 250,
      'optimizer': {'name': 'sgd', 'lr': 0.01, 'momentum': 0.9,
                    'nesterov': False, 'weight_decay': 5e-4, 'clip': 0.1},
      'schedule': {'name': 'step', 'decay_start': 80, 'decay_every': 5,
                   'decay_rate': 0.9},
      'ldl': {'temperature': 1.0, 'onehot_weight': 0.0,
              'reduction': 'class_mean'},
      'data': {'name': 'fer2013', 'data_dir': None, 'train_split': 'train',
               'extra_train': (), 'holdout': 0,
               'eval_splits': ('validation', 'test'), 'augment': 'crop',
               'crop': 44, 'crop_scale': (0.08, 1.0), 'flip': True,
               'cutout_holes': 1, 'cutout_length': 16, 'eval_crop': 'ten',
               'rotation': 0.0, 'scale': (1.0, 1.0), 'translation': 0.0,
               'brightness': 0.0, 'contrast': 0.0, 'gamma': 0.0,
               'erasing': 0.0, 'erasing_area': (0.02, 0.33),
               'mean': None, 'std': None, 'class_weights': 'none',
               'workers': 0, 'threads': 4}})


def model_step(name, mode, batch, width=1.0, dtype='float32'):
  """(the call to time, its record without the timings)."""
  config = _paper_recipe()
  config.model = ml_collections.ConfigDict({'name': name})
  if width != 1.0:
    config.model.width = width
  model = models.create(config.model, 7, dtype)
  shape = INPUT_SHAPES[name]
  mesh = jax.sharding.Mesh(jax.devices(), ('data',))
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  lr_fn = optim.learning_rate_fn(config, steps_per_epoch=100)
  tx = optim.create_optimizer(config, lr_fn)
  state = steps_lib.create_train_state(model, tx, shape, jax.random.key(0),
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
    step = jax.jit(functools.partial(steps_lib.train_step, model=model, tx=tx,
                                     lr_fn=lr_fn, teacher=teacher,
                                     ldl_config=config.ldl),
                   compiler_options=cpu_conv.compiler_options())
    key = jax.random.key(1)
    fn = lambda: step(state, batch_data, key, teacher_variables)
  elif mode == 'infer':
    variables = {'params': state.params, 'batch_stats': state.batch_stats}
    forward = jax.jit(lambda v, x: model.apply(v, x, train=False),
                      compiler_options=cpu_conv.compiler_options())
    fn = lambda: forward(variables, batch_data['image'])
  else:
    raise ValueError(f"mode {mode!r}: expected 'train', 'ldl' or 'infer'")
  suffix = '' if dtype == 'float32' else f'/{dtype}'
  return fn, {
      'name': f'{name}/{mode}{suffix}', 'model': name, 'mode': mode,
      'batch': batch, 'input': 'x'.join(map(str, shape)),
      'params': int(params), 'width': width, 'dtype': dtype, 'flops': flops}


def _timed(record, round_seconds):
  """The record with the images/s (and GFLOP/s) of the median of
  `round_seconds` a batch, one figure a round."""
  seconds = statistics.median(round_seconds)
  record = dict(record, img_per_s=record['batch'] / seconds,
                round_seconds=list(round_seconds))
  flops = record.pop('flops', None)
  record['gflops_per_img'] = flops and flops / record['batch'] / 1e9
  record['achieved_gflops'] = flops and flops / seconds / 1e9
  return record


def time_predict(batch, steps):
  """The shipped model through `Predictor.probabilities`, as photos go:
  faces of 120x120 px (resized, ten-cropped, then the model)."""
  predictor = predict.Predictor.pretrained()
  faces = list(np.random.default_rng(0).integers(
      0, 256, (batch, 120, 120, 3), np.uint8))
  seconds, = timing.interleaved_seconds([lambda: predictor.probabilities(faces)],
                                 steps, 1)
  return {'name': f'predict/shipped/batch={batch}', 'model': 'shipped',
          'mode': 'predict', 'batch': batch, 'input': '120x120x3',
          'params': None, 'img_per_s': batch / seconds,
          'latency_ms': 1000 * seconds, 'gflops_per_img': None,
          'achieved_gflops': None}


def time_pipeline(dataset, workers, batch, steps, data_dir=None):
  """Images/s the training iterator delivers with the paper's augmentations."""
  config = _paper_recipe().data
  config.name, config.data_dir, config.workers = dataset, data_dir, workers
  return bench_input.record(dataset, config, workers, batch,
                            bench_input.time_iterator(config, batch, steps))


def _ratio(records, width, a, b):
  """images/s of record a over record b at `width` ((model, mode) pairs):
  the median over the rounds of the two timed in the same round, which
  a slow spell of the machine shifts less than a ratio of medians."""
  find = lambda model, mode: next(
      (r for r in records if r.get('width') == width
       and r['model'] == model and r['mode'] == mode
       and r.get('dtype', 'float32') == 'float32'), None)
  ra, rb = find(*a), find(*b)
  if ra is None or rb is None:
    return None
  return statistics.median(
      (ra['batch'] / ta) / (rb['batch'] / tb)
      for ta, tb in zip(ra['round_seconds'], rb['round_seconds']))


def width_table(records, widths):
  """Markdown rows: VGG19 train and forward against PyTorch's, U-VGG19's
  train step against VGG19's, at each width (float32)."""
  columns = (('VGG19 train vs PyTorch', ('vgg19', 'train'),
              ('torch_vgg19', 'train')),
             ('VGG19 forward vs PyTorch', ('vgg19', 'infer'),
              ('torch_vgg19', 'infer')),
             ('U-VGG19 train vs VGG19', ('uvgg19', 'train'),
              ('vgg19', 'train')))
  lines = ['| width | ' + ' | '.join(c[0] for c in columns) + ' |',
           '|---' * (len(columns) + 1) + '|']
  for width in widths:
    cells = [_ratio(records, width, a, b) for _, a, b in columns]
    lines.append(f'| {width:g} | ' + ' | '.join(
        '-' if c is None else f'{c:.2f}x' for c in cells) + ' |')
  return lines


def main(argv):
  del argv
  if flags.FLAGS.summary:
    for name in flags.FLAGS.models:
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
  batch = lambda name: flags.FLAGS.batch or BATCHES[name]
  modes = [m for m in flags.FLAGS.modes
           if m not in ('input', 'predict', 'kernels', 'video')]
  widths = [float(w) for w in flags.FLAGS.width]
  # What the table compares runs side by side in each round: for each width
  # and mode, every model and then PyTorch's version of it.
  steps, skipped = [], {}
  for width in widths:
    for mode in modes:
      for name in flags.FLAGS.models:
        steps += [model_step(name, mode, batch(name), width, dtype)
                  for dtype in flags.FLAGS.dtypes]
        if (flags.FLAGS.reference and name in torch_reference.REFERENCES
            and mode in ('train', 'infer')):
          try:
            steps.append(torch_reference.torch_step(
                name, mode, batch(name), INPUT_SHAPES[name], width))
          except ImportError as e:
            skipped[name] = (f'--reference for {name}: skipped ({e}; see '
                             'requirements-test.txt)')
  for message in skipped.values():
    print(message)
  rounds = timing.interleaved_rounds([fn for fn, _ in steps], flags.FLAGS.steps,
                              flags.FLAGS.rounds)
  records = [_timed(record, r) for (_, record), r in zip(steps, rounds)]
  for ref in [r for r in records if 'reference_of' in r]:
    ref['ours_vs_torch'] = _ratio(records, ref['width'],
                                  (ref['reference_of'], ref['mode']),
                                  (ref['model'], ref['mode']))
  if 'input' in flags.FLAGS.modes:
    # Throughput over many batches: per-batch times only show the buffer.
    records += [time_pipeline(flags.FLAGS.data, int(workers),
                              flags.FLAGS.batch or BATCHES['vgg19'],
                              max(20, flags.FLAGS.steps), flags.FLAGS.data_dir)
                for workers in flags.FLAGS.workers]
    records += bench_input.time_rafdb(
        [int(w) for w in flags.FLAGS.workers],
        flags.FLAGS.batch or BATCHES['efficientnet_b0'],
        max(20, flags.FLAGS.steps))
  if 'predict' in flags.FLAGS.modes:
    records += [time_predict(batch, flags.FLAGS.steps) for batch in (1, 64)]
  clips = []
  if 'video' in flags.FLAGS.modes:
    clips = bench_video.time_video(flags.FLAGS.rounds)
  kernels = []
  if 'kernels' in flags.FLAGS.modes:
    if jax.default_backend() == 'cpu':
      kernels = bench_kernels.time_kernels(flags.FLAGS.steps,
                                           flags.FLAGS.rounds)
    else:
      print(f'--modes=kernels: no CPU paths run on {jax.default_backend()}')
  rate = timing.matmul_gflops()
  tunables = os.environ.get('GLIBC_TUNABLES')
  if flags.FLAGS.json:
    print(json.dumps(records + kernels + clips + [{'name': 'matmul', 'achieved_gflops': rate,
                                 'glibc_tunables': tunables}], indent=1))
    return
  print(f'{jax.devices()[0].platform}: {jax.device_count()} device(s); '
        f'float32 matmul {rate:.0f} GFLOP/s; GLIBC_TUNABLES={tunables}; '
        f'medians of {flags.FLAGS.rounds} interleaved rounds of {flags.FLAGS.steps} '
        'steps')
  for r in records:
    params = '' if r['params'] is None else f"{r['params']:>11,d} params"
    width = '' if r.get('width') is None else f"w={r['width']:<6g}"
    line = (f"{r['name']:26s} {width:8s} batch {r['batch']:4d} "
            f"{r['input']:9s} {params:18s} {r['img_per_s']:8.1f} img/s")
    if r['gflops_per_img'] is not None:
      line += (f" {r['gflops_per_img']:7.3f} GFLOP/img "
               f"{r['achieved_gflops']:6.1f} GFLOP/s")
    if 'latency_ms' in r:
      line += f"   {r['latency_ms']:.1f} ms a call"
    if r.get('ours_vs_torch') is not None:
      line += f"   ours / this: {r['ours_vs_torch']:.2f}x"
    if 'cores_for_gpu' in r:
      line += (f"   {r['img_per_s_per_worker']:.0f} a worker: "
               f"{r['cores_for_gpu']} cores for {r['gpu']}")
    print(line)
  if kernels:
    print('\n'.join(['', *bench_kernels.table(kernels)]))
  if clips:
    print('\n'.join(['', *bench_video.table(clips)]))
  if {'vgg19', 'uvgg19'} & set(flags.FLAGS.models) and (
      len(widths) > 1 or flags.FLAGS.reference):
    print('\n'.join(['', *width_table(records, widths)]))


if __name__ == '__main__':
  define_flags()
  hugepages.reexec()
  app.run(main)
