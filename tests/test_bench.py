"""The bench's entry point runs (its timings are not asserted)."""
import subprocess
import sys

import numpy as np
import pytest

from configs import effnet_b0_rafdb
from configs import vgg19_fer2013
from conftest import REPO, run_env
from fer_jax import bench
from fer_jax import bench_input
from fer_jax import bench_video
from fer_jax import faces


def test_bench_summary_prints_every_model():
  result = subprocess.run(
      [sys.executable, '-m', 'fer_jax.bench', '--summary'], cwd=REPO,
      env=run_env(GLIBC_TUNABLES='glibc.malloc.hugetlb=0'),
      capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  rows = {line.split()[0]: line for line in result.stdout.splitlines()}
  assert set(rows) == {'vgg19', 'uvgg19', 'efficientnet_b0', 'resnet50'}
  assert '20,743,255 params' in rows['uvgg19']
  assert '44x44x1' in rows['uvgg19'] and '224x224x3' in rows['resnet50']
  # With ImageNet's head, the papers' counts (torchvision's exact ones).
  assert '(5,288,548 with 1000 classes); paper: 5.3M' in rows[
      'efficientnet_b0']
  assert '(25,557,032 with 1000 classes); paper: 25.6M' in rows['resnet50']


def test_width_table_pairs_the_steps_timed_in_the_same_round():
  # Slow spells hit different rounds of the two steps' five: the ratio of
  # their medians says 3.75x, the steps timed side by side 1.25x each time
  # they were both fast or both slow.
  ours = [1.0, 1.0, 1.0, 3.0, 3.0]
  theirs = [1.25, 3.75, 3.75, 3.75, 1.25]
  uvgg = [2.0, 2.0, 2.0, 6.0, 6.0]
  records = [bench._timed({'model': model, 'mode': 'train', 'batch': 128,
                           'width': 0.125}, seconds)
             for model, seconds in (('vgg19', ours), ('torch_vgg19', theirs),
                                    ('uvgg19', uvgg))]
  assert records[0]['img_per_s'] == 128.0  # the median round
  header, _, row = bench.width_table(records, [0.125])
  assert header.startswith('| width | VGG19 train vs PyTorch |')
  assert row == '| 0.125 | 1.25x | - | 0.50x |'


def test_the_bench_times_the_paper_recipe_of_its_config():
  # The package does not import configs/, so the bench states the recipe
  # it times; it must stay configs/vgg19_fer2013.py's.
  recipe = bench._paper_recipe()
  config = vgg19_fer2013.get_config()
  for section in ('optimizer', 'schedule', 'ldl', 'data'):
    for key, value in recipe[section].items():
      ours = tuple(value) if isinstance(value, list) else value
      theirs = config[section][key]
      theirs = tuple(theirs) if isinstance(theirs, list) else theirs
      assert ours == theirs, f'{section}.{key}'
  assert recipe.epochs == config.epochs


def test_the_input_bench_times_the_rafdb_recipe_of_its_config():
  recipe = bench_input.rafdb_recipe()
  config = effnet_b0_rafdb.get_config().data
  for key, value in recipe.items():
    if key in ('data_dir', 'workers', 'threads'):
      continue  # the bench's own
    ours = tuple(value) if isinstance(value, list) else value
    theirs = config[key]
    theirs = tuple(theirs) if isinstance(theirs, list) else theirs
    assert ours == theirs, key
  assert set(recipe) == set(config)


def test_the_input_bench_feeds_224_pixel_batches_of_a_generated_rafdb():
  r, = bench_input.time_rafdb([0], batch=8, steps=2)
  assert r['input'] == '224x224' and r['img_per_s'] > 0
  assert r['cores_for_gpu'] == np.ceil(bench_input.GPU_IMAGES_PER_S
                                       / r['img_per_s'])


@pytest.mark.parametrize('count', [1, 4])
def test_the_video_bench_clip_holds_its_faces(tmp_path, count):
  import cv2  # pylint: disable=g-import-not-at-top
  path = bench_video.write_clip(str(tmp_path / 'clip.mp4'), count)
  capture = cv2.VideoCapture(path)
  frames = []
  while (read := capture.read())[0]:
    frames.append(cv2.cvtColor(read[1], cv2.COLOR_BGR2RGB))
  assert len(frames) == bench_video.FRAMES
  assert frames[0].shape == (*bench_video.SIZE, 3)
  for frame in (frames[0], frames[-1]):
    assert len(faces.detect(frame)) == count
