"""A video's emotions over time, per tracked face: a CSV and a PNG.

`predict --out` writes them beside the annotated video, from the same
per-frame records `--json` prints: `<name>_timeline.csv` has one row per
face and frame (time in s, frame, track id, then each class's smoothed
probability, as the records' "smoothed"), and `<name>_timeline.png` one
panel per track with its smoothed probabilities over time
(tests/test_predict.py::test_a_video_gives_tracks_and_a_timeline).
"""
import csv
import io

import numpy as np

from fer_jax import figures
from fer_jax import files

plt = figures.plt


def rows(records, class_names):
  """[(time, frame, track, smoothed probabilities...)] of frame records."""
  return [(r['time'], r['frame'], face['track'],
           *[face['smoothed'][n] for n in class_names])
          for r in records for face in r['faces']]


def write_csv(path, records, class_names):
  text = io.StringIO()
  writer = csv.writer(text, lineterminator='\n')
  writer.writerow(['time', 'frame', 'track', *class_names])
  writer.writerows([f'{v:.6g}' if isinstance(v, float) else v for v in row]
                   for row in rows(records, class_names))
  return files.write(path, text.getvalue())


def write_png(path, records, class_names, title):
  """One panel per track: its smoothed probabilities against time."""
  table = rows(records, class_names)
  track_ids = sorted({row[2] for row in table})
  fig, axes = plt.subplots(max(1, len(track_ids)), 1, squeeze=False,
                           sharex=True,
                           figsize=(8, 1.2 + 1.8 * max(1, len(track_ids))))
  for ax, track in zip(axes[:, 0], track_ids):
    mine = np.array([row for row in table if row[2] == track], np.float64)
    for c, name in enumerate(class_names):
      ax.plot(mine[:, 0], mine[:, 3 + c], label=name, linewidth=1.2)
    ax.set_ylim(0, 1)
    ax.set_ylabel(f'track {track}')
  if not track_ids:
    axes[0, 0].text(0.5, 0.5, 'no face found', ha='center', va='center')
  axes[0, 0].legend(loc='upper left', bbox_to_anchor=(1.01, 1), fontsize=8)
  axes[-1, 0].set_xlabel('time (s)')
  fig.suptitle(title)
  return figures.save(fig, path)
