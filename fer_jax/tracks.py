"""Faces followed through a video: an id that stays with each person, and
probabilities smoothed over that person's frames.

Rules (tests/test_tracks.py):
- A detection continues the live track whose last box it overlaps most
  (IoU >= `MIN_IOU`), or, failing that, the nearest one whose last box's
  centre is within `MAX_CENTRE_SHIFT` box sizes of its own (a face that
  moved most of its width between two strided frames); each track takes at most one
  detection per frame, best matches first. Anything else starts a track.
- A track ends once it has been missed for more than `gap` seconds, so that
  `--video_stride` does not change what a gap means; a face that returns
  after a longer gap is a new track.
- Smoothing is causal, an exponential moving average over the track's
  frames with a half-life of `half_life` seconds (the weight of a frame
  dt seconds old falls as 0.5 ** (dt / half_life), whatever the frame
  rate); 0 leaves the probabilities as they are.
"""
import dataclasses

import numpy as np

MIN_IOU = 0.3
MAX_CENTRE_SHIFT = 1.0


def iou(a, b):
  """Intersection over union of two (x, y, w, h) boxes."""
  ax, ay, aw, ah = a
  bx, by, bw, bh = b
  w = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
  h = max(0.0, min(ay + ah, by + bh) - max(ay, by))
  union = aw * ah + bw * bh - w * h
  return w * h / union if union > 0 else 0.0


def _centre_shift(a, b):
  """Distance between the boxes' centres, in sizes of the larger box."""
  ax, ay, aw, ah = a
  bx, by, bw, bh = b
  distance = np.hypot(ax + aw / 2 - bx - bw / 2, ay + ah / 2 - by - bh / 2)
  return distance / max(aw, ah, bw, bh, 1)


@dataclasses.dataclass
class Track:
  """One person's face so far."""
  id: int
  box: tuple
  first: float  # seconds
  last: float
  frames: int
  smoothed: np.ndarray
  total: np.ndarray  # sum of the raw probabilities, for the mean

  def summary(self, class_names):
    """The track's record: times, frames, mean probabilities, label."""
    mean = self.total / self.frames
    return {'type': 'track', 'track': self.id,
            'first': round(self.first, 3), 'last': round(self.last, 3),
            'frames': self.frames,
            'mean_probabilities': {n: float(p)
                                   for n, p in zip(class_names, mean)},
            'label': class_names[int(np.argmax(mean))]}


class Tracker:
  """Assigns track ids to each frame's faces and smooths their
  probabilities; see the module doc."""

  def __init__(self, gap, half_life):
    if gap < 0 or half_life < 0:
      raise ValueError(f'gap={gap}, half_life={half_life}: expected >= 0')
    self.gap, self.half_life = gap, half_life
    self.live, self.ended = [], []
    self._next_id = 1

  def _match(self, boxes):
    """{detection index: live track} by IoU, then by centre distance."""
    matched, taken = {}, set()
    for score, limit in ((iou, MIN_IOU),
                         (lambda a, b: -_centre_shift(a, b),
                          -MAX_CENTRE_SHIFT)):
      pairs = sorted(
          ((score(track.box, box), i, t)
           for t, track in enumerate(self.live) if t not in taken
           for i, box in enumerate(boxes) if i not in matched),
          key=lambda p: (-p[0], p[1], p[2]))
      for value, i, t in pairs:
        if value >= limit and i not in matched and t not in taken:
          matched[i] = self.live[t]
          taken.add(t)
    return matched

  def update(self, time, boxes, probabilities):
    """[(track id, smoothed probabilities)] of one frame's faces (`boxes`
    as (x, y, w, h), `probabilities` one row per face) at `time` s."""
    for track in [t for t in self.live if time - t.last > self.gap]:
      self.live.remove(track)
      self.ended.append(track)
    matched = self._match(boxes)
    out = []
    for i, (box, p) in enumerate(zip(boxes, probabilities)):
      p = np.asarray(p, np.float64)
      track = matched.get(i)
      if track is None:
        track = Track(self._next_id, tuple(box), time, time, 0,
                      p.copy(), np.zeros_like(p))
        self._next_id += 1
        self.live.append(track)
      else:
        keep = (0.5 ** ((time - track.last) / self.half_life)
                if self.half_life else 0.0)
        track.smoothed = keep * track.smoothed + (1 - keep) * p
      track.box, track.last = tuple(box), time
      track.frames += 1
      track.total += p
      out.append((track.id, track.smoothed.copy()))
    return out

  def tracks(self):
    """Every track so far, in the order they started."""
    return sorted(self.ended + self.live, key=lambda t: t.id)
