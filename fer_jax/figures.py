"""A run's figures as PNG files: matplotlib's Agg backend, no display needed.

Each function draws one figure from what a run leaves in its workdir (an
`eval/<split>.json` record, the `metrics.jsonl` lines) or from a model's sown
intermediates, writes it to `path` (a temporary name, then renamed) and
returns `path`. `fer_jax.report` calls them; `tests/test_report.py` checks
what they draw.
"""
import os

import matplotlib

matplotlib.use('Agg')  # before pyplot: no display on servers
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position

from fer_jax import time_split  # pylint: disable=g-import-not-at-top,wrong-import-position


def save(fig, path):
  """Writes `fig` to `path` as PNG (a temporary name, then renamed) and
  closes it; returns `path`."""
  os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
  fig.savefig(path + '.tmp.png', dpi=110, bbox_inches='tight')
  plt.close(fig)
  os.replace(path + '.tmp.png', path)
  return path


def confusion(record, path):
  """Two heatmaps of `record` (an eval/<split>.json): counts, and rows as
  percentages of each true class."""
  names = list(record['classes'])
  counts = np.asarray(record['confusion'])
  rows = 100 * np.asarray(record['confusion_normalized'])
  size = 2.2 + 0.55 * len(names)
  fig, axes = plt.subplots(1, 2, figsize=(2 * size + 1, size))
  for ax, values, fmt, title in (
      (axes[0], counts, '{:d}', 'counts'),
      (axes[1], rows, '{:.0f}', '% of the true class')):
    ax.imshow(rows, cmap='Blues', vmin=0, vmax=100)
    for (i, j), value in np.ndenumerate(values):
      ax.text(j, i, fmt.format(value), ha='center', va='center', fontsize=8,
              color='white' if rows[i, j] > 55 else 'black')
    ax.set_xticks(range(len(names)), names, rotation=45, ha='right')
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel('predicted')
    ax.set_ylabel('true')
    ax.set_title(title)
  fig.suptitle(f"{record['split']}: accuracy {record['accuracy']:.2%} "
               f"({record['crop']}-crop, {record['checkpoint']} checkpoint, "
               f"step {record['step']})")
  return save(fig, path)


def recall_bars(record, path):
  """Per-class precision, recall and F1 bars, with each class's support."""
  names = list(record['classes'])
  x = np.arange(len(names))
  fig, ax = plt.subplots(figsize=(1.2 + 0.9 * len(names), 3.6))
  for k, metric in enumerate(('precision', 'recall', 'f1')):
    ax.bar(x + (k - 1) * 0.27, [100 * record['classes'][n][metric]
                                for n in names], 0.27, label=metric)
  ax.set_xticks(x, [f"{n}\n({record['classes'][n]['support']})"
                    for n in names])
  ax.set_ylim(0, 100)
  ax.set_ylabel('%')
  ax.axhline(100 * record['accuracy'], color='grey', lw=0.8, ls='--',
             label='accuracy')
  # Outside the axes: bars near 100% would hide under it.
  ax.legend(fontsize=8, loc='upper left', bbox_to_anchor=(1.01, 1))
  ax.set_title(f"{record['split']}: per class (support below each name)")
  return save(fig, path)


def wall_time(sessions, path):
  """One stacked horizontal bar per training session of a run record:
  its wall time by `time_split.KINDS`."""
  timed = time_split.sessions_timed(sessions)
  fig, ax = plt.subplots(figsize=(7, 1.8 + 0.45 * len(timed)))
  for row, (_, split) in enumerate(timed):
    left = 0.0
    for color, kind in enumerate(time_split.KINDS):
      ax.barh(row, split[kind], left=left, color=f'C{color}',
              label=kind if row == 0 else None)
      left += split[kind]
  ax.set_yticks(range(len(timed)), [f'session {k}' for k, _ in timed])
  ax.invert_yaxis()
  ax.set_xlabel('seconds')
  ax.legend(fontsize=8, loc='upper left', bbox_to_anchor=(1.01, 1))
  ax.set_title('Where the wall time went')
  return save(fig, path)


def curves(lines, path):
  """Training curves from metrics.jsonl lines: train loss and accuracy per
  logging step, each eval split's per epoch, and the learning rate."""
  train = [l for l in lines if 'train/loss' in l]
  evals = sorted({k.split('/')[0] for l in lines for k in l
                  if k.endswith('/accuracy') and not k.startswith('train')})
  fig, axes = plt.subplots(1, 3, figsize=(14, 3.6))
  for ax, metric in ((axes[0], 'loss'), (axes[1], 'accuracy')):
    ax.plot([l['step'] for l in train], [l[f'train/{metric}'] for l in train],
            lw=0.8, label='train (batches)')
    for split in evals:
      points = [l for l in lines if f'{split}/{metric}' in l]
      ax.plot([l['step'] for l in points],
              [l[f'{split}/{metric}'] for l in points], 'o-', label=split)
    ax.set_xlabel('step')
    ax.set_title(metric)
    ax.legend(fontsize=8)
  axes[2].plot([l['step'] for l in train],
               [l['train/learning_rate'] for l in train])
  axes[2].set_xlabel('step')
  axes[2].set_title('learning rate')
  return save(fig, path)


def feature_maps(image, intermediates, path, channels=8):
  """The input image, then for each sown map (stages, fused skips) its
  `channels` most active channels on that image, each scaled to its own
  range (the U-VGG19 paper's Figures 9 and 10). `intermediates`: {name:
  (H, W, C) array}, in order; 1x1 maps (the last stage at 44x44) have no
  spatial pattern to show and are left out, the title says so."""
  left_out = [n for n, m in intermediates.items() if m.shape[0] * m.shape[1]
              == 1]
  intermediates = {n: m for n, m in intermediates.items()
                   if n not in left_out}
  rows = len(intermediates) + 1
  fig, axes = plt.subplots(rows, channels, figsize=(1.3 * channels,
                                                    1.45 * rows),
                           squeeze=False)
  for ax in axes.flat:
    ax.axis('off')
  axes[0, 0].imshow(image.squeeze(), cmap='gray' if image.shape[-1] == 1
                    else None)
  axes[0, 0].set_title('input', fontsize=8)
  for r, (name, fmap) in enumerate(intermediates.items(), start=1):
    order = np.argsort(-fmap.mean(axis=(0, 1)))[:channels]
    for k, c in enumerate(order):
      axes[r, k].imshow(fmap[..., c], cmap='viridis')
      axes[r, k].set_title(f'{name} c{c}' if k == 0 else f'c{c}',
                           fontsize=7)
  title = ('Feature maps: the most active channels of each stage (after '
           'its pool) and of each fused skip')
  if left_out:
    title += f"\n({', '.join(left_out)}: 1x1, not drawn)"
  fig.suptitle(title)
  return save(fig, path)


def se_weights(weights, path, title=''):
  """Each SE module's channel weights on one image, one panel per stage:
  a row per convolution, channels along x. `weights`: [(stage, (C,))]."""
  stages = sorted({s for s, _ in weights})
  fig, axes = plt.subplots(len(stages), 1, figsize=(10, 0.3 * len(weights)
                                                    + 0.7 * len(stages)),
                           squeeze=False, constrained_layout=True)
  for ax, stage in zip(axes[:, 0], stages):
    block = np.stack([w for s, w in weights if s == stage])
    shown = ax.imshow(block, aspect='auto', cmap='magma', vmin=0, vmax=1,
                      interpolation='nearest')
    ax.set_yticks(range(len(block)),
                  [f'conv {i + 1}' for i in range(len(block))], fontsize=7)
    ax.set_ylabel(f'stage {stage}', fontsize=8)
  axes[-1, 0].set_xlabel('channel')
  fig.colorbar(shown, ax=axes[:, 0], label='SE weight (sigmoid)',
               shrink=0.6, aspect=30)
  fig.suptitle(f'Squeeze-excitation channel weights {title}'.strip())
  return save(fig, path)
