import json
import os

import jax
import numpy as np
from PIL import Image
import pytest

from fer_jax import errors
from fer_jax import models
from fer_jax import predict
from fer_jax import report


@pytest.fixture(scope='module')
def reports(smoke_ablation):
  """report.write on the U-VGG19 row and on the VGG19 row of the smoke
  ablation: {row: (workdir, comparison row, report.md text)}."""
  _, workdir, _ = smoke_ablation
  out = {}
  for row in ('6_all', '1_none'):
    path = os.path.join(workdir, row)
    comparison_row = report.write(path)
    with open(os.path.join(path, 'report.md')) as f:
      out[row] = (path, comparison_row, f.read())
  return out


def test_report_has_config_diff_hardware_metrics_and_optimistic_figure(
    reports):
  workdir, row, text = reports['6_all']
  with open(os.path.join(workdir, 'eval', 'test.json')) as f:
    test = json.load(f)
  # The tiny config against configs/demo.py, which it was made from.
  assert "| model.width | 0.0625 | 0.125 |" in text
  assert "| data.name | 'fer_synth/small' | 'fer_synth' |" in text
  assert "| model.use_bn | True | '<absent>' |" in text  # the row's switch
  assert f"{jax.device_count()} cpu device(s)" in text
  assert 'Training wall time, evaluations included:' in text
  assert ('| session | startup | compile | input | steps | eval | checkpoint '
          '| logging | images/s training | programs from the cache |') in text
  assert f"| test | selected step {test['step']} | ten | " \
         f"{100 * test['accuracy']:.2f} |" in text
  assert "The papers' way, optimistic" in text
  assert row['test %'] == f"{100 * test['accuracy']:.2f}"
  for name, c in test['classes'].items():
    assert (f"| {name} | {100 * c['precision']:.2f} | "
            f"{100 * c['recall']:.2f} |") in text


def test_every_figure_is_a_png_linked_from_the_report(reports):
  expected = {'6_all': {'curves', 'confusion_validation', 'confusion_test',
                        'per_class_validation', 'per_class_test',
                        'feature_maps', 'se_weights', 'time_split'}}
  expected['1_none'] = expected['6_all'] - {'se_weights'}  # VGG19: no SE
  for row, (workdir, _, text) in reports.items():
    folder = os.path.join(workdir, 'figures')
    names = {n[:-4] for n in os.listdir(folder)}
    assert names == expected[row]
    for name in names:
      assert f'](figures/{name}.png)' in text
      with Image.open(os.path.join(folder, f'{name}.png')) as png:
        assert png.format == 'PNG' and min(png.size) > 200


def test_sown_stages_skips_and_se_weights_of_one_image(reports):
  workdir, _, _ = reports['6_all']
  predictor = predict.Predictor.load(workdir)
  image, what = report.chosen_image(predictor, None, None, 'test', 3)
  assert what.startswith('fer_synth/small test image 3')
  maps, se = report.intermediates(predictor, image)
  # 44x44 centre crop at width 1/16: each stage's pooled output, and the
  # fused skips at the size of the deep map they join.
  assert {n: m.shape for n, m in maps.items()} == {
      'stage1': (22, 22, 4), 'stage2': (11, 11, 8), 'stage3': (5, 5, 16),
      'fused_skip4': (5, 5, 16), 'stage4': (2, 2, 32),
      'fused_skip5': (2, 2, 32), 'stage5': (1, 1, 32)}
  assert list(maps)[3] == 'fused_skip4'  # drawn in the order they occur
  assert [stage for stage, _ in se] == [1, 1, 2, 2, 3, 3, 3, 3] + [4] * 4 + [
      5] * 4
  assert all(0 < w.min() and w.max() < 1 for _, w in se)
  assert [w.shape[0] for _, w in se] == [4, 4, 8, 8] + [16] * 4 + [32] * 8
  # Sowing changes nothing the model computes.
  model = models.create(predictor.config.model, len(predictor.class_names))
  x = np.random.default_rng(0).normal(size=(2, 44, 44, 1)).astype(np.float32)
  plain = model.apply(predictor.variables, x)
  sown, state = model.apply(predictor.variables, x,
                            mutable=['intermediates'])
  np.testing.assert_array_equal(plain, sown)
  assert len(state['intermediates']) == 7 + 16


def test_comparison_table_has_a_row_per_run(reports):
  rows = [reports[r][1] for r in ('1_none', '6_all')]
  table = report.comparison(rows).splitlines()
  assert table[0].startswith('| run | model | epochs | ')
  assert [line.split(' | ')[1] for line in table[2:]] == ['vgg19', 'vgg19']
  assert len(table) == 4


def test_a_workdir_without_a_run_is_one_clear_error(tmp_path):
  with pytest.raises(errors.MissingError, match='no checkpoints/ folder'):
    report.write(str(tmp_path))


@pytest.mark.parametrize('content, problem', [
    ('[1, 2, 3]', 'no step, accuracy, classes'),
    ('{"step": 3', 'Expecting'),
])
def test_an_evaluation_record_of_another_shape_is_one_clear_error(
    reports, tmp_path, content, problem):
  import shutil  # pylint: disable=g-import-not-at-top
  workdir = str(shutil.copytree(reports['6_all'][0], tmp_path / 'run'))
  with open(os.path.join(workdir, 'eval', 'test.json'), 'w') as f:
    f.write(content)
  with pytest.raises(errors.UserError, match=(
      rf'eval/test.json: not an evaluation record \({problem}.*\); write '
      'it again with launch.py --mode=eval')):
    report.write(workdir)
