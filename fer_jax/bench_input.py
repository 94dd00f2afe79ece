"""`python -m fer_jax.bench --modes=input`: how fast the input pipeline
feeds training, for the FER2013 recipe (48x48 grey, crop 44, flip, Cutout)
on `--data` and for the RAF-DB recipe of configs/effnet_b0_rafdb.py (100x100
aligned RGB faces, random resized crop to 224, flip, normalisation) on a
generated RAF-DB in its official layout, with 0, 1, 2... grain worker
processes (`--workers`).

A GPU trains EfficientNet-B0 far faster than a CPU augments 224-pixel
images, so the RAF-DB rows also say how many cores, at this machine's
images/s per core, would keep up with `GPU_IMAGES_PER_S`.
"""
import os
import tempfile
import time

import ml_collections
import numpy as np
from PIL import Image

from fer_jax.data import pipeline
from fer_jax.data import prepare

# EfficientNet-B0 training on one A100 80GB with mixed precision: 2489
# images/s (NVIDIA DeepLearningExamples, PyTorch/Classification/ConvNets/
# efficientnet/README.md, "Training performance: NVIDIA A100 (8x A100
# 80GB)", 1 GPU, PyTorch 21.03 NGC container). That page publishes no H100
# figure; an H100 trains at least as fast, so the cores stated are a floor.
GPU_IMAGES_PER_S = 2489
GPU_SOURCE = ('EfficientNet-B0 on 1 A100 80GB, mixed precision, NVIDIA '
              'DeepLearningExamples (an H100 is faster: a floor)')


def rafdb_recipe():
  """configs/effnet_b0_rafdb.py's input fields (the package does not import
  configs/; `tests/test_bench.py` checks them against it)."""
  return ml_collections.ConfigDict({
      'name': 'rafdb', 'data_dir': None, 'train_split': 'train',
      'extra_train': (), 'holdout': 0, 'eval_splits': ('test',),
      'augment': 'resized_crop', 'crop': 224, 'crop_scale': (0.08, 1.0),
      'flip': True, 'cutout_holes': 0, 'cutout_length': 16,
      'eval_crop': 'centre', 'rotation': 0.0, 'scale': (1.0, 1.0),
      'translation': 0.0, 'brightness': 0.0, 'contrast': 0.0, 'gamma': 0.0,
      'erasing': 0.0, 'erasing_area': (0.02, 0.33),
      'mean': (0.57535914, 0.44928582, 0.40079932),
      'std': (0.20735591, 0.18981615, 0.18132027),
      'class_weights': 'none', 'workers': 0, 'threads': 4})


def write_rafdb(root, per_class=32):
  """A RAF-DB in the official layout (EmoLabel/list_patition_label.txt,
  Image/aligned/*_aligned.jpg): `per_class` 100x100 RGB JPEGs a class for
  training, one for test; smooth colour fields with noise, so that decoding
  costs about what a face does. Returns `root`."""
  rng = np.random.default_rng(0)
  folder = os.path.join(root, 'Image', 'aligned')
  os.makedirs(folder, exist_ok=True)
  os.makedirs(os.path.join(root, 'EmoLabel'), exist_ok=True)
  y, x = np.mgrid[0:100, 0:100] / 100.0
  lines = []
  for split, count in (('train', per_class), ('test', 1)):
    for k in range(7 * count):
      name = f'{split}_{k + 1:05d}' if split == 'train' else f'test_{k + 1:04d}'
      base = rng.uniform(60, 200, 3) + 50 * np.sin(
          rng.uniform(2, 6) * x[..., None] + rng.uniform(2, 6) * y[..., None])
      image = np.clip(base + rng.normal(0, 8, (100, 100, 3)), 0, 255)
      Image.fromarray(image.astype(np.uint8)).save(
          os.path.join(folder, f'{name}_aligned.jpg'), quality=90)
      lines.append(f'{name}.jpg {k % 7 + 1}\n')
  with open(os.path.join(root, 'EmoLabel', 'list_patition_label.txt'),
            'w') as f:
    f.writelines(lines)
  return root


def time_iterator(data_config, batch, steps):
  """Images/s of the training iterator `data_config` makes, after a first
  batch that starts the workers and fills the prefetch buffer."""
  iterator = iter(pipeline.load(data_config, batch, batch, seed=0).train)
  next(iterator)
  start = time.perf_counter()
  for _ in range(steps):
    next(iterator)
  return steps * batch / (time.perf_counter() - start)


def record(name, data_config, workers, batch, images_per_s):
  shape = (data_config.crop, data_config.crop)
  return {'name': f'input/{name}/workers={workers}', 'model': None,
          'mode': 'input', 'batch': batch,
          'input': 'x'.join(map(str, shape)), 'params': None,
          'workers': workers, 'img_per_s': images_per_s,
          'gflops_per_img': None, 'achieved_gflops': None}


def time_rafdb(workers, batch, steps):
  """A record per worker count for the RAF-DB recipe; a worker count above
  0 also says the cores that would feed `GPU_IMAGES_PER_S` at its rate per
  worker process."""
  records = []
  with tempfile.TemporaryDirectory() as root:
    raw = write_rafdb(os.path.join(root, 'raw'))
    prepare.prepare('rafdb', raw, os.path.join(root, 'tfds'))
    for count in workers:
      config = rafdb_recipe()
      config.data_dir, config.workers = os.path.join(root, 'tfds'), count
      rate = time_iterator(config, batch, steps)
      r = record('rafdb_224', config, count, batch, rate)
      per_core = rate / max(count, 1)
      r['img_per_s_per_worker'] = per_core
      r['cores_for_gpu'] = int(np.ceil(GPU_IMAGES_PER_S / per_core))
      r['gpu'] = f'{GPU_IMAGES_PER_S} img/s: {GPU_SOURCE}'
      records.append(r)
  return records
