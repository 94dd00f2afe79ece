"""One-command ablation tables: each row a run, our figures beside the paper's.

Run:  python -m fer_jax.ablate --table=uvgg19 \
          --config=configs/uvgg_fer2013.py --workdir=runs/ablate_uvgg19
      python -m fer_jax.ablate --table=effnet \
          --config=configs/effnet_b0_rafdb_ldl_style.py \
          --workdir=runs/ablate_effnet
Budget overrides pass through to every row (a CPU version:
`--config.epochs=3 --config.model.width=0.25`); `--rows=2,5` runs some rows
only (one per GPU, say); `--print_commands` prints the per-row commands
instead of running anything. Each row trains in `WORKDIR/<row>`, resuming a
finished or interrupted row instead of retraining it, is then evaluated on
`--eval_splits` with its selected checkpoint (`eval/<split>.json`), and
`WORKDIR/ablation.md` gets the table of every finished row.

Tables.
  * `uvgg19`: the U-VGG19 paper's Table 5 on FER2013, five switches over
    VGG19: ten-crop test (else the centre crop), Cutout (one hole, else
    none), BatchNorm, the U-Net framework and the improved SE. The U-Net
    framework is the paper's new network (its Figure 3): the crop-and-concat
    skips together with the PReLU activations and the GAP/1x1-conv
    classifier, which the table has no switches of their own for; the
    improved SE is SE with Mish after every convolution
    (fer_jax/models/vgg.py). The base config must be a VGG config
    (configs/uvgg_fer2013.py, configs/vgg19_fer2013*.py); every row sets
    all five switches, so which of the two it is does not matter.
  * `effnet`: the EfficientFace study's rows on RAF-DB: one-hot, + label
    distribution learning, + stylised minority classes. The base config is
    the last row (configs/effnet_b0_rafdb_ldl_style.py, with its teacher and
    stylised set); the other rows switch them off.
`tests/test_ablate.py` checks each row's switches against the paper's table
and runs a smoke table.
"""
import dataclasses
import functools
import os
import shlex
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from fer_jax import errors
from fer_jax import eval_files
from fer_jax import evaluation
from fer_jax import files
from fer_jax import hugepages
from fer_jax import train
from fer_jax import weights


def define_flags():
  """The command's flags; defined when it runs, not at import, so that
  other modules with flags of the same names can be imported beside it."""
  config_flags.DEFINE_config_file('config', None, 'Base config file.',
                                  lock_config=True)
  flags.DEFINE_enum('table', None, ['uvgg19', 'effnet'],
                    'Which paper table to run.')
  flags.DEFINE_string('workdir', None, 'One subdirectory per row.')
  flags.DEFINE_list('rows', [], 'Row numbers to run (default all).')
  flags.DEFINE_list(
      'eval_splits', ['validation', 'test'],
      'Splits each row is evaluated on at the end, selected checkpoint.')
  flags.DEFINE_bool('print_commands', False,
                    'Print the per-row commands; run nothing.')
  flags.mark_flags_as_required(['config', 'table', 'workdir'])


@dataclasses.dataclass(frozen=True)
class Row:
  name: str  # its workdir
  switches: tuple  # the table's switches that are on
  paper: float | None  # the paper's test accuracy, % (None: not published)


# switch: {config key: (value when off, value when on)}
SWITCHES = {
    'uvgg19': {
        'ten_crop': {'data.eval_crop': ('centre', 'ten')},
        'cutout': {'data.cutout_holes': (0, 1)},
        'batch_norm': {'model.use_bn': (False, True)},
        'unet': {'model.use_skips': (False, True),
                 'model.activation': ('relu', 'prelu'),
                 'model.head': ('dense', 'gap_conv')},
        'improved_se': {'model.use_se': (False, True),
                        'model.se_activation': ('relu', 'mish')},
    },
    'effnet': {'ldl': {}, 'stylisation': {}},  # see `row_config`
}

# The U-VGG19 paper prints its Table 5 accuracies; the sources we could read
# give only its final model's (the abstract's 73.75%, row 6).
TABLES = {
    'uvgg19': (
        Row('1_none', (), None),
        Row('2_tencrop_bn', ('ten_crop', 'batch_norm'), None),
        Row('3_unet', ('ten_crop', 'batch_norm', 'unet'), None),
        Row('4_unet_se', ('ten_crop', 'batch_norm', 'unet', 'improved_se'),
            None),
        Row('5_unet_cutout', ('ten_crop', 'batch_norm', 'unet', 'cutout'),
            None),
        Row('6_all', ('ten_crop', 'batch_norm', 'unet', 'improved_se',
                      'cutout'), 73.75),
    ),
    'effnet': (
        Row('1_onehot', (), 81.52),
        Row('2_ldl', ('ldl',), 84.63),
        Row('3_ldl_style', ('ldl', 'stylisation'), 86.25),
    ),
}


def _set(config, key, value):
  *path, leaf = key.split('.')
  node = config
  for part in path:
    node = node[part]
  node[leaf] = value


def row_config(config, table, row):
  """A copy of the base `config` with `row`'s switches set."""
  config = config.copy_and_resolve_references()
  config.unlock()
  if table == 'uvgg19':
    if config.model.name not in ('vgg19', 'uvgg19'):
      raise errors.UserError(
          f'config.model.name={config.model.name!r}: --table=uvgg19 needs a '
          'VGG config, e.g. configs/uvgg_fer2013.py')
    config.model.name = 'vgg19'  # every difference is a switch below
    for switch, keys in SWITCHES[table].items():
      for key, values in keys.items():
        _set(config, key, values[switch in row.switches])
  else:
    if not config.ldl.teacher or not config.data.extra_train:
      raise errors.UserError(
          '--table=effnet: the base config needs config.ldl.teacher and '
          'config.data.extra_train (the last row, e.g. configs/'
          'effnet_b0_rafdb_ldl_style.py); the other rows switch them off')
    if 'ldl' not in row.switches:
      config.ldl.teacher = None
    if 'stylisation' not in row.switches:
      config.data.extra_train = ()
  config.lock()
  return config


def switches(config, table):
  """The table's switches that a resolved row config has on."""
  if table == 'effnet':
    return {name for name, on in (('ldl', bool(config.ldl.teacher)),
                                  ('stylisation',
                                   bool(config.data.extra_train))) if on}
  model, data = config.model, config.data
  on = {
      'ten_crop': data.eval_crop == 'ten',
      'cutout': data.cutout_holes > 0,
      'batch_norm': model.get('use_bn', True),
      'unet': (model.get('use_skips') and model.get('activation') == 'prelu'
               and model.get('head') == 'gap_conv'),
      'improved_se': (model.get('use_se')
                      and model.get('se_activation') == 'mish'),
  }
  return {name for name, value in on.items() if value}


def selected_rows(table, numbers):
  rows = TABLES[table]
  if not numbers:
    return rows
  chosen = []
  for number in numbers:
    if not number.isdigit() or not 1 <= int(number) <= len(rows):
      raise errors.UserError(
          f'--rows={",".join(numbers)}: {number!r} is not a row of '
          f'--table={table}; expected numbers 1 to {len(rows)}')
    chosen.append(rows[int(number) - 1])
  return chosen


def run_row(config, workdir, eval_splits, config_file=None):
  """Trains a row (resuming it), then evaluates its selected checkpoint on
  `eval_splits` unless eval/<split>.json already holds that checkpoint."""
  _, history = train.train_and_evaluate(config, workdir, config_file)
  step = weights.selected(history, *weights.selection(config))['step']
  have = [eval_files.read_report(workdir, split) for split in eval_splits]
  if any(r is None or r['step'] != step or r['checkpoint'] != 'selected'
         for r in have):
    eval_config = config.copy_and_resolve_references()
    eval_config.data.eval_splits = tuple(eval_splits)
    evaluation.evaluate(eval_config, workdir, 'selected')


def table_markdown(config, table, workdir, eval_splits, base_path):
  """The markdown table of every row whose evaluation files exist."""
  names = list(SWITCHES[table])
  head = ['row', *names, *(f'{s} %' for s in eval_splits), 'paper test %']
  lines = ['| ' + ' | '.join(head) + ' |',
           '|' + '---|' * len(head)]
  for row in TABLES[table]:
    results = [eval_files.read_report(os.path.join(workdir, row.name), split)
               for split in eval_splits]
    ours = [f"{r['accuracy']:.2%}"[:-1] if r else 'not run'
            for r in results]
    paper = f'{row.paper:.2f}' if row.paper is not None else 'not published'
    lines.append('| ' + ' | '.join(
        [row.name,
         *('yes' if n in row.switches else '' for n in names),
         *ours, paper]) + ' |')
  budget = (f'Base config {base_path or "(given in code)"}, '
            f'{config.epochs} epochs, model '
            f"width {config.model.get('width', 1.0)}, batch "
            f'{config.batch_size}, seed {config.seed}; each row selected on '
            f'{config.selection_split or "its last epoch"}.')
  return '\n'.join([f'# Ablation: --table={table}', '', budget, '',
                    *lines, '']) + '\n'


def write_table(text, workdir):
  return files.write(os.path.join(workdir, 'ablation.md'), text)


def commands(table, rows, argv):
  """The shell command of each row, the user's overrides passed on."""
  keep = [a for a in argv[1:] if not a.startswith(('--rows',
                                                   '--print_commands'))]
  return [shlex.join(['python', '-m', 'fer_jax.ablate', *keep,
                      f'--rows={TABLES[table].index(row) + 1}'])
          for row in rows]


def run(config, table, workdir, rows=(), eval_splits=('validation', 'test'),
        base_path=''):
  """Runs the chosen rows and writes WORKDIR/ablation.md; returns its text."""
  chosen = selected_rows(table, list(rows))
  configs = [row_config(config, table, row) for row in chosen]
  for row, row_cfg in zip(chosen, configs):
    print(f'Ablation row {row.name}: switches on: '
          f'{", ".join(row.switches) or "none"}', flush=True)
    run_row(row_cfg, os.path.join(workdir, row.name), eval_splits,
            base_path or None)
  text = table_markdown(config, table, workdir, eval_splits, base_path)
  print(text, end='')
  print(f'Written to {write_table(text, workdir)}')
  return text


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  logging.set_verbosity(logging.WARNING)  # orbax logs every file at INFO
  if flags.FLAGS.print_commands:
    rows = errors.report(selected_rows, flags.FLAGS.table, flags.FLAGS.rows)
    for line in commands(flags.FLAGS.table, rows, sys.argv):
      print(line)
    return
  errors.report(run, flags.FLAGS.config, flags.FLAGS.table, flags.FLAGS.workdir,
                flags.FLAGS.rows, flags.FLAGS.eval_splits,
                flags.FLAGS['config'].config_filename,
                verbose=flags.FLAGS.verbosity >= 1)


if __name__ == '__main__':
  define_flags()
  hugepages.reexec()
  app.run(main, flags_parser=functools.partial(errors.parse_flags,
                                               program='fer_jax.ablate'))
