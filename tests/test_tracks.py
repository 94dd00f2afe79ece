"""Track ids and smoothing over a video's faces (fer_jax.tracks)."""
import numpy as np
import pytest

from fer_jax import tracks

P = [0.5, 0.5]


def _run(tracker, frames):
  """Track ids per frame of [(time, [boxes])]."""
  return [[t for t, _ in tracker.update(time, boxes, [P] * len(boxes))]
          for time, boxes in frames]


def test_two_faces_crossing_keep_their_ids():
  # 80 px faces 20 px per frame apart, one above the other (overlapping by a
  # quarter of their height), crossing at frame 5.
  frames = [(i / 10, [(20 * i, 50, 80, 80), (200 - 20 * i, 110, 80, 80)])
            for i in range(11)]
  assert _run(tracks.Tracker(gap=1.0, half_life=0), frames) == [[1, 2]] * 11


def test_a_fast_move_between_strided_frames_keeps_the_id():
  # 0.8 box widths a frame: IoU 0.11, the centre within one box size.
  frames = [(0.0, [(100, 100, 50, 50)]), (0.5, [(140, 100, 50, 50)]),
            (1.0, [(180, 100, 50, 50)])]
  assert _run(tracks.Tracker(gap=1.0, half_life=0), frames) == [[1]] * 3


@pytest.mark.parametrize('away, expected', [(0.8, 1), (1.5, 2)])
def test_a_face_back_within_the_gap_keeps_its_id(away, expected):
  box = (100, 100, 60, 60)
  tracker = tracks.Tracker(gap=1.0, half_life=0)
  _run(tracker, [(0.0, [box]), (0.1, [box])])  # then unseen
  assert _run(tracker, [(0.1 + away, [box])]) == [[expected]]
  summaries = [t.summary(('a', 'b')) for t in tracker.tracks()]
  assert [s['frames'] for s in summaries] == ([3] if expected == 1
                                              else [2, 1])


def test_smoothed_labels_follow_a_change_within_half_a_second_and_flip_less():
  # 10 frames/s: class 0 for 3 s, then class 1; one frame in five is noise
  # that favours the other class.
  rng = np.random.default_rng(0)
  times = np.arange(60) / 10
  truth = (times >= 3).astype(int)
  noisy = rng.random(60) < 0.2
  shown = np.where(noisy, 1 - truth, truth)
  probabilities = np.where(shown[:, None] == np.arange(2), 0.7, 0.3)
  tracker = tracks.Tracker(gap=1.0, half_life=0.3)
  smoothed = [tracker.update(t, [(0, 0, 50, 50)], [p])[0][1]
              for t, p in zip(times, probabilities)]
  raw_labels = probabilities.argmax(1)
  smooth_labels = np.argmax(smoothed, 1)
  flips = lambda labels: int(np.sum(labels[1:] != labels[:-1]))
  assert flips(smooth_labels) < flips(raw_labels)
  # After the change, the smoothed label is the new one within 0.5 s and
  # stays so while the noise is a single frame.
  settled = times[(times >= 3) & (smooth_labels == 1)][0]
  assert settled - 3 <= 0.5
  assert flips(smooth_labels) <= 3
  # The smoothing weighs frames by time: the same frames at another stride
  # decay alike.
  every_other = tracks.Tracker(gap=1.0, half_life=0.3)
  again = [every_other.update(t, [(0, 0, 50, 50)], [p])[0][1]
           for t, p in zip(times[::2], probabilities[::2])]
  assert np.argmax(again[-1]) == 1


def test_without_smoothing_the_probabilities_are_the_frames_own():
  tracker = tracks.Tracker(gap=1.0, half_life=0)
  for t, p in ((0.0, [0.9, 0.1]), (0.1, [0.2, 0.8])):
    (_, smoothed), = tracker.update(t, [(0, 0, 10, 10)], [p])
    np.testing.assert_allclose(smoothed, p)
