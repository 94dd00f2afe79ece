"""A run's report: WORKDIR/report.md with its figures, from what training saved.

  python -m fer_jax.report runs/demo
  python -m fer_jax.report runs/a runs/b --out=comparison.md

For each workdir, `report.md` holds the model (parameters, multiply-adds at
its input size), the config as differences from the file it came from (as
recorded at training time), the hardware and wall time of each training
session (also recorded then), the selected epoch's metrics on every split
with an `eval/<split>.json` (`launch.py --mode=eval` writes more), per-class
precision/recall/F1, the papers' optimistic figure (the best epoch on the
test split itself) labelled as such, and the figures of `fer_jax.figures`
in WORKDIR/figures/: training curves, a confusion matrix and per-class bars
per split, and for VGG models the feature maps of each stage and fused skip
and the SE channel weights on one image (`--image`, else image
`--image_index` of the dataset's `--image_split`). With several workdirs a
comparison table (one row each) is printed, and written to `--out`.
Reports only read the workdir's checkpoints; they take no lock.
`tests/test_report.py` checks them on a tiny run.
"""
import importlib.util
import json
import os
import sys

from absl import app
from absl import flags
from absl import logging
import jax
import ml_collections
import numpy as np

from fer_jax import checkpoint
from fer_jax import errors
from fer_jax import eval_files
from fer_jax import files
from fer_jax import figures
from fer_jax import metrics as metrics_lib
from fer_jax import models
from fer_jax import predict
from fer_jax import time_split
from fer_jax import weights
from fer_jax import workdir as workdir_lib
from fer_jax.data import pipeline
from fer_jax.data import transforms
from fer_jax.models import vgg


def define_flags():
  """The command's flags; defined when it runs, not at import, so that
  other modules with flags of the same names can be imported beside it."""
  flags.DEFINE_string('out', None,
                      'With several workdirs: write the comparison here.')
  flags.DEFINE_string('image', None,
                      'An image file for the feature-map figures.')
  flags.DEFINE_string('image_split', 'test',
                      'Else the dataset split to take it from.')
  flags.DEFINE_integer('image_index', 0, '... and its index.')
  flags.DEFINE_string('data_dir', None,
                      'Where the dataset is, if not where the run '
                      'read it.')
  flags.DEFINE_string(
      'checkpoint', 'selected', 'Checkpoint for the feature-map figures.')


def read_run(workdir):
  """(run record of the latest checkpoint, eval records by split, metrics
  lines) of a workdir."""
  if not os.path.isdir(os.path.join(workdir, 'checkpoints')):
    raise errors.MissingError(f'{workdir}: no checkpoints/ folder; expected '
                              'the workdir of a training run')
  mngr = checkpoint.manager(workdir, keep=1, track_best=False,
                            read_only=True)
  _, run = weights.find_checkpoint(mngr, workdir, 'latest')
  evals = {}
  folder = os.path.join(workdir, 'eval')
  for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else ():
    split, extension = os.path.splitext(name)
    if extension == '.json' and not split.endswith('_robustness'):
      evals[split] = eval_files.read_report(workdir, split)
      shifted = eval_files.read_report(workdir, split, '_robustness')
      if shifted is not None:
        evals[split]['robustness'] = shifted
  if not evals:
    raise errors.MissingError(
        f'{workdir}/eval: no <split>.json; evaluate first: python launch.py '
        f'--config=... --workdir={workdir} --mode=eval')
  path = os.path.join(workdir, 'metrics.jsonl')
  lines = []
  if os.path.exists(path):
    with open(path) as f:
      lines = [json.loads(l) for l in metrics_lib.complete_lines(path, f)]
  return run, evals, lines


def file_config(path):
  """get_config() of a config file, or None if it cannot be read here."""
  if not path:
    return None
  candidates = [path, os.path.join(os.path.dirname(os.path.dirname(
      os.path.abspath(__file__))), path)]
  path = next((p for p in candidates if os.path.isfile(p)), None)
  if path is None:
    return None
  root = os.path.dirname(os.path.dirname(os.path.abspath(path)))
  sys.path.insert(0, root)  # configs import their base as `configs.x`
  try:
    spec = importlib.util.spec_from_file_location('_report_config', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config().to_dict()
  except Exception:  # pylint: disable=broad-except
    return None  # a config file that no longer loads: no diff, say so
  finally:
    sys.path.remove(root)


def _percent(value):
  return f'{100 * value:.2f}'


def _duration(seconds):
  minutes, seconds = divmod(int(round(seconds)), 60)
  hours, minutes = divmod(minutes, 60)
  return f'{hours} h {minutes:02d} min' if hours else f'{minutes} min {seconds:02d} s'


def config_section(run):
  config_file = run.get('config_file')
  base = file_config(config_file)
  if base is None:
    where = (f'{config_file} could not be read here' if config_file else
             'the run did not record its config file')
    return [f'The whole config ({where}):', '', '| key | value |',
            '|---|---|'] + [f'| {key} | {value!r} |' for key, value in
                            sorted(workdir_lib.flatten(run['config']).items())]
  differ = workdir_lib.differences(base, run['config'])
  if not differ:
    return [f'The config is {config_file} unchanged.']
  lines = [f'Differences from `{config_file}`:', '',
           '| key | this run | the file |', '|---|---|---|']
  lines += [f'| {key} | {new!r} | {old!r} |'
            for key, (old, new) in differ.items()]
  return lines


def hardware_section(run):
  sessions = run.get('sessions')
  if not sessions:
    return ['Hardware and wall time were not recorded (a run trained '
            'before fer_jax recorded them).']
  lines = ['| session | started | steps | wall time | hardware |',
           '|---|---|---|---|---|']
  for k, s in enumerate(sessions, start=1):
    h = s['hardware']
    lines.append(
        f"| {k} | {s['started']} | {s['first_step']}-{s.get('last_step', '')}"
        f" | {_duration(s.get('seconds', 0))} | {h['processes']} process(es),"
        f" {h['devices']} {h['device_kind']} device(s); {h['cpu']}"
        f" ({h['cpu_count']} cores); jax {h['jax']} |")
  total = sum(s.get('seconds', 0) for s in sessions)
  lines += ['', f'Training wall time, evaluations included: '
            f'{_duration(total)}.']
  timed = time_split.sessions_timed(sessions)
  if timed:
    lines += ['', 'Where it went, seconds (`fer_jax/time_split.py` says '
              'what each kind holds):', '',
              '| session | ' + ' | '.join(time_split.KINDS)
              + ' | images/s training | programs from the cache |',
              '|---|' + '---|' * (len(time_split.KINDS) + 2)]
    for k, split in timed:
      rate = time_split.images_per_s(split, split['images'])
      lines.append(f'| {k} | ' + ' | '.join(
          f'{split[kind]:.1f}' for kind in time_split.KINDS)
                   + f" | {rate:.0f} | "
                   f"{split['cache_hits']} of {split['cache_lookups']} |")
  return lines


def metrics_section(run, evals):
  config = run['config']
  history = run['history']
  split, metric = weights.selection(config)
  chosen = weights.selected(history, split, metric)
  how = (f"best {split} {metric.replace('_', ' ')}" if split
         else 'the last epoch')
  lines = [f"Selected epoch {chosen['epoch']} of {config['epochs']} ({how});"
           ' the figures below are of the checkpoint each eval file names.',
           '', '| split | checkpoint | crop | accuracy % | macro P | macro R (balanced accuracy) '
           '| macro F1 | weighted F1 | loss |', '|---|---|---|---|---|---|---|'
           '---|---|']
  for split, r in evals.items():
    lines.append(
        f"| {split} | {r['checkpoint']} step {r['step']}"
        + (f", logit adjustment tau {r['logit_adjustment_tau']:g}"
           if r.get('logit_adjustment_tau') else '')
        + f" | {r['crop']} | "
        f"{_percent(r['accuracy'])} | {_percent(r['macro']['precision'])} | "
        f"{_percent(r['macro']['recall'])} | {_percent(r['macro']['f1'])} | "
        f"{_percent(r['weighted']['f1'])} | {r['loss']:.4f} |")
  for split in evals:
    if split == config['selection_split']:
      continue
    seen = [h for h in history if split in h['eval']]
    if not seen:
      lines += ['', f'The papers\' figure (best epoch on {split} itself) is '
                f'not available: {split} was not evaluated every epoch.']
      continue
    best = max(seen, key=lambda h: h['eval'][split]['accuracy'])
    lines += ['', f"The papers' way, optimistic (the best epoch chosen on "
              f"{split} itself): {_percent(best['eval'][split]['accuracy'])}%"
              f" at epoch {best['epoch']}. Not a fair estimate: {split} "
              'chose it.']
  for split, r in evals.items():
    if 'teacher_distances' in r:
      lines += ['', f'Student against teacher on {split}: ' + ', '.join(
          f'{k} {v:.4f}' for k, v in r['teacher_distances'].items())]
  for split, r in evals.items():
    lines += ['', f'Per class, {split}:', '',
              '| class | precision % | recall % | F1 % | support |',
              '|---|---|---|---|---|']
    lines += [f"| {name} | {_percent(c['precision'])} | "
              f"{_percent(c['recall'])} | {_percent(c['f1'])} | "
              f"{c['support']} |" for name, c in r['classes'].items()]
  for split, r in evals.items():
    if 'robustness' in r:
      lines += ['', *robustness_section(split, r['robustness'])]
  return lines


def robustness_section(split, record):
  """The table of eval/<split>_robustness.json."""
  seen = {True: 'yes', False: 'no (unseen)', None: '-'}
  lines = [f"Under shifts, {split} (checkpoint step {record['step']}, "
           f"{record['crop']}-crop; `launch.py --mode=eval --robustness`):",
           '', '| shift | what | in training | accuracy % | balanced % | '
           'macro F1 % |', '|---|---|---|---|---|---|']
  for name, r in record['shifts'].items():
    lines.append(f"| {name} | {r['what']} | "
                 f"{seen[r['augmented_in_training']]} | "
                 f"{_percent(r['accuracy'])} | "
                 f"{_percent(r['balanced_accuracy'])} | "
                 f"{_percent(r['macro_f1'])} |")
  return lines


def model_line(run):
  config = ml_collections.ConfigDict(run['config'])
  classes = len(run['data']['class_names'])
  crop = (config.data.crop, config.data.crop, run['data']['image_shape'][2])
  params, macs = models.macs_per_image(models.create(config.model, classes),
                                       crop)
  return (f'Model `{config.model.name}` {dict(config.model)}: '
          f'{params:,} parameters, {macs / 1e9:.3f} G multiply-adds per '
          f'{crop[0]}x{crop[1]}x{crop[2]} image; dataset '
          f"`{config.data.name}`, classes {', '.join(run['data']['class_names'])}.")


def chosen_image(predictor, data_dir, image_path, split, index):
  """(uint8 image as the dataset stores it, description)."""
  shape = predictor.image_shape
  if image_path:
    return (predict.to_dataset_image(predict.read_image(image_path), shape),
            image_path)
  name = predictor.config.data.name
  builder = pipeline.get_builder(name, data_dir or
                                 predictor.config.data.get('data_dir'))
  source = builder.as_data_source(split=split)
  if not 0 <= index < len(source):
    raise errors.UserError(f'--image_index={index}: {name} {split} has '
                           f'{len(source)} images')
  example = source[index]
  label = predictor.class_names[int(example['label'])]
  return (np.asarray(example['image']).reshape(shape),
          f'{name} {split} image {index} (label {label})')


def intermediates(predictor, image):
  """({stage/skip name: (H, W, C)}, [(stage, SE weights)]) of a VGG model on
  one image, centre-cropped and normalised as evaluation does."""
  data = predictor.config.data.copy_and_resolve_references()
  data.eval_crop = 'centre'
  x = transforms.eval_transform(data)({'image': image, 'label': 0})['image']
  model = models.create(predictor.config.model, len(predictor.class_names))
  _, state = jax.jit(lambda v, x: model.apply(
      v, x[None], train=False, mutable=['intermediates']))(
          predictor.variables, x)
  sown = jax.device_get(state['intermediates'])
  maps = {name: sown[name][0][0] for name in sorted(
      (n for n in sown if n.startswith(('stage', 'fused_skip'))),
      key=lambda n: (int(n[-1]), n.startswith('stage')))}
  stage_of_conv = [s + 1 for s, (convs, _) in enumerate(vgg.STAGES)
                   for _ in range(convs)]
  se = [sown[f'SqueezeExcite_{k}']['weights'][0][0]
        for k in range(len(stage_of_conv)) if f'SqueezeExcite_{k}' in sown]
  return maps, list(zip(stage_of_conv, se))


def write(workdir, image_path=None, image_split='test', image_index=0,
          data_dir=None, checkpoint_step='selected'):
  """Writes WORKDIR/report.md and WORKDIR/figures/*.png; returns the
  comparison row {column: value} of this run."""
  run, evals, lines = read_run(workdir)
  folder = os.path.join(workdir, 'figures')
  shown = []
  if lines:
    shown.append(('Training curves', figures.curves(
        lines, os.path.join(folder, 'curves.png'))))
  if any('time' in s for s in run.get('sessions', [])):
    shown.append(('Wall time by kind, per session', figures.wall_time(
        run['sessions'], os.path.join(folder, 'time_split.png'))))
  for split, record in evals.items():
    shown.append((f'Confusion matrix, {split}', figures.confusion(
        record, os.path.join(folder, f'confusion_{split}.png'))))
    shown.append((f'Per class, {split}', figures.recall_bars(
        record, os.path.join(folder, f'per_class_{split}.png'))))
  notes = []
  if run['config']['model']['name'] in ('vgg19', 'uvgg19'):
    predictor = predict.Predictor.load(workdir, checkpoint_step)
    try:
      image, what = chosen_image(predictor, data_dir, image_path,
                                 image_split, image_index)
    except errors.MissingError as e:
      notes.append(f'Feature maps not drawn: {e}; pass --image or '
                   '--data_dir.')
    else:
      maps, se = intermediates(predictor, image)
      shown.append((f'Feature maps of {what}, checkpoint step '
                    f'{predictor.step}', figures.feature_maps(
                        image, maps, os.path.join(folder,
                                                  'feature_maps.png'))))
      if se:
        shown.append((f'SE channel weights on {what}', figures.se_weights(
            se, os.path.join(folder, 'se_weights.png'), f'on {what}')))
  text = [f'# Run report: {workdir}', '', model_line(run), '',
          '## Config', '', *config_section(run), '',
          '## Hardware and wall time', '', *hardware_section(run), '',
          '## Metrics', '', *metrics_section(run, evals), '',
          '## Figures', '', *notes]
  for title, path in shown:
    text += [f'### {title}', '',
             f'![{title}]({os.path.relpath(path, workdir)})', '']
  path = os.path.join(workdir, 'report.md')
  files.write(path, '\n'.join(text) + '\n')
  chosen = weights.selected(run['history'], *weights.selection(run['config']))
  row = {'run': workdir, 'model': run['config']['model']['name'],
         'epochs': f"{chosen['epoch']}/{run['config']['epochs']}"}
  for split, r in evals.items():
    row[f'{split} %'] = _percent(r['accuracy'])
    row[f'{split} macro F1 %'] = _percent(r['macro']['f1'])
  seconds = sum(s.get('seconds', 0) for s in run.get('sessions', []))
  row['wall time'] = _duration(seconds) if seconds else 'not recorded'
  return row


def comparison(rows):
  columns = list(dict.fromkeys(k for row in rows for k in row))
  return '\n'.join(['| ' + ' | '.join(columns) + ' |',
                    '|' + '---|' * len(columns)] +
                   ['| ' + ' | '.join(str(row.get(c, '')) for c in columns)
                    + ' |' for row in rows]) + '\n'


def main(argv):
  workdirs = argv[1:]
  if not workdirs:
    raise app.UsageError('expected one or more workdirs')
  logging.set_verbosity(logging.WARNING)
  rows = []
  for workdir in workdirs:
    rows.append(errors.report(write, workdir, flags.FLAGS.image, flags.FLAGS.image_split,
                              flags.FLAGS.image_index, flags.FLAGS.data_dir,
                              flags.FLAGS.checkpoint,
                              verbose=flags.FLAGS.verbosity >= 1))
    print(f'Wrote {os.path.join(workdir, "report.md")}')
  if len(rows) > 1:
    table = comparison(rows)
    print(table, end='')
    if flags.FLAGS.out:
      files.write(flags.FLAGS.out, table)


if __name__ == '__main__':
  define_flags()
  app.run(main)
