"""`python -m fer_jax.bench --modes=video`: predict's speed on a video.

A 640x480 MPEG-4 clip (2 s at 25 frames/s) built from a real photograph
(scikit-image's astronaut, a test requirement, on its coffee photograph)
with one face and with four, each read at stride 1 by the shipped model in
two ways: one frame per model call with decoding in line (as `predict`
read videos before `fer_jax.video`), and `video.Options()`'s frames per
call with decoding ahead in a thread. Each figure is the median of
interleaved rounds: frames/s end to end, and per frame the milliseconds
spent waiting for decoded frames, detecting faces and in the model.
"""
import os
import statistics
import tempfile
import time

import numpy as np

from fer_jax import predict
from fer_jax import tracks
from fer_jax import video

SIZE = (480, 640)
FRAMES, FPS = 50, 25.0
# (top, left) of each face's first frame; faces drift 2 px a frame.
LAYOUTS = {1: [(120, 220)], 4: [(10, 20), (10, 340), (240, 60), (240, 380)]}
WAYS = {'one frame a call, decoding in line':
            dict(frames_per_call=1, decode_ahead=False),
        'batched across frames, decoding ahead':
            dict(frames_per_call=video.Options.frames_per_call,
                 decode_ahead=True)}


def write_clip(path, count):
  """The clip with `count` faces (1 or 4); returns `path`."""
  import cv2  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top
  try:
    from skimage import data  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise SystemExit('--modes=video: its clip is built from scikit-image\'s '
                     f'photographs ({e}); pip install -r '
                     'requirements-test.txt') from None
  head = data.astronaut()[20:260, 130:330]  # hair to chin, 240 x 200
  if count > 1:
    head = np.asarray(Image.fromarray(head).resize((144, 172)))
  background = np.asarray(Image.fromarray(data.coffee()).resize(SIZE[::-1]))
  writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*'mp4v'), FPS,
                           SIZE[::-1])
  for i in range(FRAMES):
    frame = background.copy()
    for k, (top, left) in enumerate(LAYOUTS[count]):
      x = left + 2 * i
      frame[top:top + head.shape[0], x:x + head.shape[1]] = (
          head if k % 2 == 0 else head[:, ::-1])
    writer.write(np.ascontiguousarray(frame[..., ::-1]))
  writer.release()
  return path


def _once(predictor, path, options):
  """(seconds, Timer, faces found) of reading the whole clip once."""
  timer = video.Timer()
  start = time.perf_counter()
  _, _, frames = video.open_video(path, options)
  found = sum(len(faces) for *_, faces in video.predicted_frames(
      predictor, frames, True, tracks.Tracker(1.0, 0.3),
      options.frames_per_call, timer))
  return time.perf_counter() - start, timer, found


def time_video(rounds):
  """Records of each face count and way, medians over `rounds`."""
  predictor = predict.Predictor.pretrained()
  records = []
  with tempfile.TemporaryDirectory() as folder:
    for count in LAYOUTS:
      path = write_clip(os.path.join(folder, f'faces{count}.mp4'), count)
      options = {way: video.Options(stride=1, **o) for way, o in WAYS.items()}
      for o in options.values():
        _once(predictor, path, o)  # compiles the batch sizes it uses
      runs = {way: [] for way in options}
      for _ in range(rounds):
        for way, o in options.items():
          runs[way].append(_once(predictor, path, o))
      for way, results in runs.items():
        per_frame = lambda part: 1000 * statistics.median(
            t.seconds[part] for _, t, _ in results) / FRAMES
        records.append({
            'name': f'video/{count} face(s)/{way}', 'faces': count,
            'way': way, 'frames': FRAMES,
            'frames_per_s': FRAMES / statistics.median(
                s for s, _, _ in results),
            'faces_found_per_frame': results[0][2] / FRAMES,
            **{f'{part}_ms_per_frame': per_frame(part)
               for part in ('decode', 'detect', 'model')}})
  return records


def table(records):
  """Lines: frames/s and the split, each way beside the other."""
  lines = ['640x480 clip, stride 1, the shipped model: frames/s and ms per '
           'frame waiting for decoding / detecting / in the model']
  for r in records:
    lines.append(
        f"{r['faces']} face(s), {r['way']:40s} {r['frames_per_s']:6.1f} "
        f"frames/s   {r['decode_ms_per_frame']:5.1f} / "
        f"{r['detect_ms_per_frame']:5.1f} / {r['model_ms_per_frame']:5.1f} ms"
        f"   ({r['faces_found_per_frame']:.2f} faces found a frame)")
  return lines
