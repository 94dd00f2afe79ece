import dataclasses
import os

import pytest

from conftest import REPO
from configs import effnet_b0_rafdb
from configs import effnet_b0_rafdb_ldl_style
from configs import uvgg_fer2013
from configs import vgg19_fer2013
from configs import vgg19_fer2013_cpu
from fer_jax import ablate
from fer_jax import errors
from fer_jax import eval_files
from fer_jax import models

# The U-VGG19 paper's Table 5, as it prints it: the switches on in each row.
PAPER_TABLE_5 = {
    1: set(),
    2: {'ten_crop', 'batch_norm'},
    3: {'ten_crop', 'batch_norm', 'unet'},
    4: {'ten_crop', 'batch_norm', 'unet', 'improved_se'},
    5: {'ten_crop', 'batch_norm', 'unet', 'cutout'},
    6: {'ten_crop', 'batch_norm', 'unet', 'improved_se', 'cutout'},
}


def _fields(module):
  return {f.name: getattr(module, f.name) for f in dataclasses.fields(module)
          if f.name not in ('parent', 'name')}


@pytest.mark.parametrize('base', [uvgg_fer2013, vgg19_fer2013,
                                  vgg19_fer2013_cpu])
def test_each_uvgg19_row_resolves_to_the_papers_switches(base):
  config = base.get_config()
  rows = ablate.TABLES['uvgg19']
  for number, row in enumerate(rows, start=1):
    resolved = ablate.row_config(config, 'uvgg19', row)
    assert ablate.switches(resolved, 'uvgg19') == PAPER_TABLE_5[number], row
    assert resolved.model.width == config.model.width  # budget kept
  first = ablate.row_config(config, 'uvgg19', rows[0])
  last = ablate.row_config(config, 'uvgg19', rows[-1])
  # Row 1 is plain VGG19 without BatchNorm, tested on the centre crop;
  # row 6 is exactly the paper's model with Cutout and ten-crop.
  assert _fields(models.create(first.model, 7)) == _fields(
      models.create(dict(vgg19_fer2013.get_config().model, use_bn=False,
                         width=config.model.width), 7))
  assert (first.data.eval_crop, first.data.cutout_holes) == ('centre', 0)
  assert _fields(models.create(last.model, 7)) == _fields(
      models.create(dict(uvgg_fer2013.get_config().model,
                         width=config.model.width), 7))
  assert (last.data.eval_crop, last.data.cutout_holes) == ('ten', 1)


def test_effnet_rows_switch_off_ldl_and_stylisation():
  config = effnet_b0_rafdb_ldl_style.get_config()
  got = [ablate.switches(ablate.row_config(config, 'effnet', row), 'effnet')
         for row in ablate.TABLES['effnet']]
  assert got == [set(), {'ldl'}, {'ldl', 'stylisation'}]
  assert [r.paper for r in ablate.TABLES['effnet']] == [81.52, 84.63, 86.25]
  with pytest.raises(errors.UserError, match='config.ldl.teacher'):
    ablate.row_config(effnet_b0_rafdb.get_config(), 'effnet',
                      ablate.TABLES['effnet'][1])
  with pytest.raises(errors.UserError, match='needs a VGG config'):
    ablate.row_config(effnet_b0_rafdb.get_config(), 'uvgg19',
                      ablate.TABLES['uvgg19'][0])


def test_rows_and_printed_commands():
  assert [r.name for r in ablate.selected_rows('uvgg19', ['2', '5'])] == [
      '2_tencrop_bn', '5_unet_cutout']
  for bad in ('7', '0', 'two'):
    with pytest.raises(errors.UserError, match=f"'{bad}' is not a row"):
      ablate.selected_rows('uvgg19', [bad])
  argv = ['ablate.py', '--table=uvgg19', '--config=configs/uvgg_fer2013.py',
          '--workdir=runs/a', '--config.epochs=3', '--print_commands']
  lines = ablate.commands('uvgg19', ablate.TABLES['uvgg19'][:2], argv)
  assert lines == [
      'python -m fer_jax.ablate --table=uvgg19 '
      '--config=configs/uvgg_fer2013.py --workdir=runs/a --config.epochs=3 '
      f'--rows={k}' for k in (1, 2)]


def _table_rows(text):
  return {line.split(' | ')[0].strip('| '): line.split(' | ')
          for line in text.splitlines() if line.startswith('| ')}


def test_smoke_ablation_trains_evaluates_and_tabulates(smoke_ablation):
  _, workdir, text = smoke_ablation
  rows = _table_rows(text)
  assert len(rows) == 1 + 6  # the header and every row of the table
  for row in ablate.TABLES['uvgg19']:
    if row.name in ('1_none', '6_all'):
      for split, column in (('validation', -3), ('test', -2)):
        record = eval_files.read_report(os.path.join(workdir, row.name), split)
        assert record['checkpoint'] == 'selected'
        assert rows[row.name][column] == f"{100 * record['accuracy']:.2f}"
    else:
      assert rows[row.name][-3:-1] == ['not run', 'not run']
  assert rows['6_all'][-1] == '73.75 |'
  with open(os.path.join(workdir, 'ablation.md')) as f:
    assert f.read() == text


def test_rerunning_a_finished_row_does_not_train_it_again(smoke_ablation):
  config, workdir, text = smoke_ablation
  row = os.path.join(workdir, '6_all')

  def saved():
    with open(os.path.join(row, 'metrics.jsonl')) as f:
      return f.read(), sorted(os.listdir(os.path.join(row, 'checkpoints')))

  before = saved()
  assert ablate.run(config, 'uvgg19', workdir, rows=('6',),
                    base_path=os.path.join(REPO, 'configs', 'demo.py')) == text
  assert saved() == before
