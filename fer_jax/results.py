"""The README's results table, generated from the committed result files.

  python -m fer_jax.results            # rewrites the table in README.md
  python -m fer_jax.results --check    # exits 1 if README.md is not current
  python -m fer_jax.results --from_run=runs/RUN --record=results/NAME.json \
      --title='...'                    # a training run's figures

Each `results/<name>.json` is one row: what ran (config, overrides, model,
data), on what (hardware, budget, commit), the command that measured it,
and each split's figures; beside it the paper's figure where the paper has
one, and whether the run was at the paper's scale (no row is, so far: the
table says so). Commands that measure a figure write their file with
`write` (`python -m fer_jax.pretrained --evaluate --record=...`); figures
measured before result files existed were transcribed, and their
`provenance` says from where. The table sits between the two markers below
in the README and nothing else there is touched (`tests/test_results.py`
regenerates it and compares bytes).
"""
import json
import os
import subprocess
import sys

from absl import app
from absl import flags

from fer_jax import errors
from fer_jax import files

BEGIN = '<!-- results table: python -m fer_jax.results -->'
END = '<!-- end of results table -->'
# Each record's keys, and what each must be.
FIELDS = {'order': int, 'title': str, 'model': str, 'data': str,
          'config': str, 'budget': str, 'hardware': str, 'commit': str,
          'command': str, 'provenance': str, 'splits': dict,
          'paper': (dict, type(None)), 'paper_scale': bool}


def _git_commit():
  try:
    return subprocess.run(
        ['git', 'rev-parse', '--short=12', 'HEAD'], capture_output=True,
        text=True, check=True,
        cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    return 'unknown (not a git checkout)'


def _command():
  """This process's command line as typed: `python -m fer_jax.x ...` (with
  -m, sys.argv[0] is the module's file path)."""
  spec = getattr(sys.modules['__main__'], '__spec__', None)
  program = (['-m', spec.name] if spec and spec.name != '__main__'
             else [sys.argv[0]])
  return ' '.join(['python', *program, *sys.argv[1:]])


def write(path, record):
  """Writes a result file; `commit` and `command` default to this
  checkout's and this process's."""
  record = {'commit': _git_commit(), 'command': _command(), **record}
  check(record, path)
  files.write(path, [json.dumps(record, indent=1, sort_keys=True) + '\n'])


def check(record, path):
  for key, kind in FIELDS.items():
    if not isinstance(record.get(key), kind):
      raise errors.UserError(f'{path}: {key!r} missing or not '
                             f'{getattr(kind, "__name__", kind)}')


def read_all(folder):
  """Every result file in `folder`, in their `order`."""
  records = []
  for name in sorted(os.listdir(folder)):
    if not name.endswith('.json'):
      continue
    path = os.path.join(folder, name)
    try:
      with open(path) as f:
        record = json.load(f)
    except ValueError as e:
      raise errors.UserError(f'{path}: not JSON ({e})') from None
    check(record, path)
    records.append((record['order'], name, record))
  return [(name, record) for _, name, record in sorted(records)]


def _percent(split, key='accuracy'):
  value = (split or {}).get(key)
  return '-' if value is None else f'{100 * value:.2f}'


def table(folder):
  """The markdown table of `folder`'s result files, with its markers."""
  lines = [BEGIN, '',
           '| result | model | data | budget | validation % | validation '
           'balanced % | test % | test balanced % | paper % |',
           '|---|---|---|---|---|---|---|---|---|']
  for name, r in read_all(folder):
    splits = r['splits']
    paper = r['paper']
    if paper is None:
      paper_cell = '-'
    else:
      paper_cell = f"{paper['figure']} ({paper['what']})"
    if not r['paper_scale'] and paper is not None and splits:
      paper_cell += '; not run at this scale here'
    lines.append('| ' + ' | '.join([
        f"[{r['title']}](results/{name})", r['model'], r['data'],
        r['budget'],
        _percent(splits.get('validation')),
        _percent(splits.get('validation'), 'balanced_accuracy'),
        _percent(splits.get('test')),
        _percent(splits.get('test'), 'balanced_accuracy'),
        paper_cell]) + ' |')
  return '\n'.join(lines + _per_class(folder) + ['', END])


def _per_class(folder):
  """Per-class recall and the robustness table of every result with them
  (the shipped models), side by side."""
  records = [(name, r) for name, r in read_all(folder)
             if any('recall' in s and 'robustness' in s
                    for s in r['splits'].values())]
  if not records:
    return []
  classes = list(next(iter(records[0][1]['splits'].values()))['recall'])
  lines = ['', 'Per class (recall %) and overall, ten-crop as `predict` '
           'serves it:', '',
           '| model | split | ' + ' | '.join(classes)
           + ' | accuracy % | balanced % | macro-F1 % |',
           '|---|---|' + '---|' * (len(classes) + 3)]
  for name, r in records:
    for split, s in r['splits'].items():
      lines.append(f"| [{r['title']}](results/{name}) | {split} | "
                   + ' | '.join(_percent(s['recall'], c) for c in classes)
                   + f" | {_percent(s)} | "
                   f"{_percent(s, 'balanced_accuracy')} | "
                   f"{_percent(s, 'macro_f1')} |")
  lines += ['', 'Under shifts (`--robustness`, fer_jax/robustness.py; '
            '"trained" says whether the model trains with that '
            'augmentation), test split, accuracy / balanced accuracy %:', '']
  shifts = list(records[0][1]['splits']['test']['robustness'])
  lines += ['| shift | ' + ' | '.join(
      f"[{r['title']}](results/{name})" for name, r in records) + ' |',
            '|---|' + '---|' * len(records)]
  for shift in shifts:
    cells = []
    for _, r in records:
      x = r['splits']['test']['robustness'].get(shift)
      cells.append('-' if x is None else
                   f"{_percent(x)} / {_percent(x, 'balanced_accuracy')}"
                   + (' (trained)' if x['augmented_in_training'] else ''))
    what = records[0][1]['splits']['test']['robustness'][shift]['what']
    lines.append(f'| {shift}: {what} | ' + ' | '.join(cells) + ' |')
  return lines


def regenerate(readme, folder):
  """README text with the table between the markers regenerated."""
  with open(readme) as f:
    text = f.read()
  start, end = text.find(BEGIN), text.find(END)
  if start < 0 or end < start:
    raise errors.UserError(f'{readme}: no results markers ({BEGIN} ... '
                           f'{END})')
  return text[:start] + table(folder) + text[end + len(END):]


def from_run(workdir, path, title, notes=''):
  """Writes the result file of a training run: each eval/<split>.json's
  figures (the selected checkpoint's), its config, budget (epochs, width,
  wall time of its training sessions) and hardware from its run record.
  Imported here: reading a run needs JAX, regenerating the table does not."""
  from fer_jax import report  # pylint: disable=g-import-not-at-top
  run, evals, _ = report.read_run(workdir)
  config = run['config']
  seconds = sum(s.get('seconds', 0) for s in run.get('sessions', []))
  hardware = run['sessions'][-1]['hardware'] if run.get('sessions') else {}
  model = config['model']
  record = {
      'order': 50, 'title': title,
      'model': f"{model['name']} at width {model.get('width', 1.0):g}",
      'data': config['data']['name'],
      'config': run.get('config_file') or '-',
      'budget': (f"{run['history'][-1]['epoch'] if run['history'] else 0}"
                 f" of {config['epochs']} epochs, {seconds / 60:.0f} min"),
      'hardware': (f"{hardware.get('cpu', '?')}, {hardware.get('cpu_count')} "
                   'cores' if hardware else '-'),
      'provenance': f'measured by training in {os.path.basename(workdir)}'
                    + (f'; {notes}' if notes else ''),
      'config_dict': config,
      'splits': {split: {'accuracy': r['accuracy'],
                         'balanced_accuracy': r.get('balanced_accuracy',
                                                    r['macro']['recall']),
                         'macro_f1': r['macro']['f1'],
                         'recall': {n: c['recall']
                                    for n, c in r['classes'].items()},
                         'step': r['step']}
                 for split, r in evals.items()},
      'paper': None, 'paper_scale': False}
  write(path, record)
  return record


def main(argv):
  del argv
  f = flags.FLAGS
  if f.from_run:
    if not f.record or not f.title:
      raise app.UsageError('--from_run needs --record=results/NAME.json and '
                           '--title')
    errors.report(from_run, f.from_run, f.record, f.title, f.notes)
    print(f'Written to {f.record}')
    return
  new = errors.report(regenerate, f.readme, f.results)
  with open(f.readme) as current:
    same = current.read() == new
  if f.check:
    if not same:
      print(f'{f.readme}: its results table is not what {f.results}/ gives; '
            'run python -m fer_jax.results', file=sys.stderr)
      sys.exit(1)
    return
  if not same:
    files.write(f.readme, [new])
  print(f'{f.readme}: results table {"rewritten" if not same else "current"}')


if __name__ == '__main__':
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  flags.DEFINE_string('readme', os.path.join(root, 'README.md'),
                      'The README whose table to regenerate.')
  flags.DEFINE_string('results', os.path.join(root, 'results'),
                      'The folder of result files.')
  flags.DEFINE_bool('check', False, 'Only check that the table is current.')
  flags.DEFINE_string('from_run', None, 'Instead: write the result file of '
                      'this training run (--record, --title, --notes).')
  flags.DEFINE_string('record', None, 'The result file to write.')
  flags.DEFINE_string('title', None, 'Its row title.')
  flags.DEFINE_string('notes', '', 'What else to say of its provenance.')
  app.run(main)
