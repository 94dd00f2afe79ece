"""Emotions through a video: frames decoded ahead, faces of several frames
in one model call, each face tracked and smoothed (`fer_jax.tracks`).

- Decoding runs in a thread `AHEAD` frames ahead of detection and the
  model (OpenCV releases the GIL while it decodes), so that the two
  overlap instead of taking turns.
- The faces of `Options.frames_per_call` frames go through the model
  together (`Predictor.probabilities`, in its fixed batch sizes): a face
  gets the same probabilities alone or with others
  (tests/test_predict.py::test_faces_of_several_frames_in_one_call_are_each_faces_own).
- Frames are still yielded in order, each once its call is done, so that
  `predict --json` streams; tracks and smoothing are `fer_jax.tracks`'.
`python -m fer_jax.bench --modes=video` times a 640x480 clip with one and
with four faces, one frame per call against `frames_per_call`, split into
decoding, detection and model time.
"""
import dataclasses
import queue
import threading
import time as time_lib

import numpy as np

from fer_jax import errors
from fer_jax import faces

AHEAD = 32  # decoded frames waiting at most: 640x480 RGB is 0.9 MB each


@dataclasses.dataclass(frozen=True)
class Options:
  """How a video is read: every `stride`-th frame; a track ends after
  `track_gap` s unseen; probabilities smoothed with a half-life of
  `smooth` s (0: off); the faces of `frames_per_call` frames per model
  call; decoding in a thread ahead (`decode_ahead`)."""
  stride: int = 10
  track_gap: float = 1.0
  smooth: float = 0.3
  frames_per_call: int = 4
  decode_ahead: bool = True

  def check(self):
    if self.stride < 1:
      raise errors.UserError(f'--video_stride={self.stride}: expected a '
                             'whole number >= 1 (1 predicts every frame)')
    for flag, value in (('track_gap', self.track_gap),
                        ('smooth', self.smooth)):
      if not value >= 0:
        raise errors.UserError(f'--{flag}={value}: expected seconds >= 0')


def _decoded(path, stride):
  """(frame rate, frame count, iterator of (index, time, RGB frame))."""
  import cv2  # pylint: disable=g-import-not-at-top
  capture = cv2.VideoCapture(path)
  if not capture.isOpened():
    raise errors.UserError(f'{path}: not a readable video')
  fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
  count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))

  def frames():
    try:
      index = 0
      while True:
        ok = capture.grab()  # skipped frames are not converted
        if not ok:
          break
        if index % stride == 0:
          _, frame = capture.retrieve()
          yield index, index / fps, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        index += 1
    finally:
      capture.release()

  return fps, count, frames()


def _ahead(frames):
  """`frames`, decoded by a thread up to `AHEAD` frames ahead."""
  waiting = queue.Queue(maxsize=AHEAD)
  done = object()
  stop = threading.Event()

  def put(item):
    # Never blocks for good: a consumer that stopped sets `stop`.
    while not stop.is_set():
      try:
        waiting.put(item, timeout=0.1)
        return True
      except queue.Full:
        continue
    return False

  def decode():
    try:
      for item in frames:
        if not put(item):
          break
    except Exception as e:  # pylint: disable=broad-except
      put(e)  # raised again in the consumer's thread
    finally:
      frames.close()  # releases the capture
      put(done)

  thread = threading.Thread(target=decode, daemon=True)
  thread.start()
  try:
    while (item := waiting.get()) is not done:
      if isinstance(item, Exception):
        raise item
      yield item
  finally:
    stop.set()  # a consumer that stops early ends the thread too
    thread.join()


def open_video(path, options):
  """(frame rate, frame count, iterator of (index, time, RGB frame)) of
  every `options.stride`-th frame, decoded ahead if `options.decode_ahead`.
  """
  fps, count, frames = _decoded(path, options.stride)
  return fps, count, (_ahead(frames) if options.decode_ahead else frames)


class Timer:
  """Seconds spent per part, for `fer_jax.bench --modes=video`."""

  def __init__(self):
    self.seconds = {'decode': 0.0, 'detect': 0.0, 'model': 0.0}

  def add(self, part, start):
    self.seconds[part] += time_lib.perf_counter() - start


def predicted_frames(predictor, frames, detect, tracker, frames_per_call,
                     timer=None):
  """Yields (index, time, frame, faces) for `frames` (from `open_video`),
  each face a `Predictor.predict` face plus its 'track', 'smoothed'
  probabilities and 'smoothed_label' from `tracker` (a `tracks.Tracker`,
  whose `tracks()` summarise the video afterwards)."""
  timer = timer or Timer()
  frames = iter(frames)
  while True:
    start = time_lib.perf_counter()
    chunk = [item for _, item in zip(range(frames_per_call), frames)]
    timer.add('decode', start)
    if not chunk:
      return
    start = time_lib.perf_counter()
    boxes = [faces.detect(frame) if detect else
             [(0, 0, frame.shape[1], frame.shape[0])]
             for _, _, frame in chunk]
    timer.add('detect', start)
    start = time_lib.perf_counter()
    found = predictor.faces([frame for _, _, frame in chunk], boxes)
    timer.add('model', start)
    for (index, time, frame), faces_ in zip(chunk, found):
      assigned = tracker.update(
          time, [f['box'] for f in faces_],
          [list(f['probabilities'].values()) for f in faces_])
      for face, (track, smoothed) in zip(faces_, assigned):
        face.update(track=track, smoothed={
            n: float(p) for n, p in zip(predictor.class_names, smoothed)},
                    smoothed_label=predictor.class_names[
                        int(np.argmax(smoothed))])
      yield index, time, frame, faces_
