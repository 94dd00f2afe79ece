"""Where a training session's wall time goes: `TimeSplit`.

The loop calls `mark(kind)` after each piece of work: the seconds since
the previous mark go to that kind, so the kinds add up to the session's
wall time by construction, and reading the clock adds no host sync (the
loop already waits for the device at its logging flush, evaluations and
checkpoints, and nowhere else). The kinds:
- startup: reading the data, building the model, restoring a checkpoint;
- compile: compiling the train and evaluation steps ahead of time; the
  evaluation step compiles in a thread while training starts, and only
  the time the loop then waits for it counts;
- input: the loop getting its next batch (pipeline and transfer). Steps
  run asynchronously: while the device is busier than the input this
  overlaps them, and when the input is the slower the device idles this
  long, which is what makes it worth watching;
- steps: dispatching train steps and waiting for them at the flush;
- eval, checkpoint (the finiteness check and the write), logging
  (metrics.jsonl, TensorBoard).
`tests/test_train.py::test_the_time_split_adds_up_and_shows_a_slow_input`
checks the sum against the wall time and a slowed pipeline as input.
"""
import collections
import time

import jax

KINDS = ('startup', 'compile', 'input', 'steps', 'eval', 'checkpoint',
         'logging')


# JAX's persistent compilation cache, counted: programs looked up in it
# ('compile_requests_use_cache') and found ('cache_hits'). Some CPUs reject
# entries another wrote; the run's summary says how many were hits.
_CACHE_EVENTS = collections.Counter()


def _count_cache_event(event, **_):
  if event.startswith('/jax/compilation_cache/'):
    _CACHE_EVENTS[event.rsplit('/', 1)[1]] += 1


jax.monitoring.register_event_listener(_count_cache_event)


class TimeSplit:
  """Seconds per kind since `start` (a `time.monotonic()`): for the whole
  session, and for the current logging interval and epoch."""

  def __init__(self, start):
    self.last = start
    self.cache_start = collections.Counter(_CACHE_EVENTS)
    self.spans = {span: (dict.fromkeys(KINDS, 0.0), [0])
                  for span in ('session', 'time', 'epoch_time')}

  def mark(self, kind):
    now = time.monotonic()
    for seconds, _ in self.spans.values():
      seconds[kind] += now - self.last
    self.last = now

  def count(self, images):
    """`images` more trained."""
    for _, images_ in self.spans.values():
      images_[0] += images

  def take(self, span):
    """{f'{span}/{kind}_s', f'{span}/images_per_s'} of 'time' (the logging
    interval) or 'epoch_time' since the last take, which starts the next;
    the rate is over its input and steps seconds."""
    seconds, images = self.spans[span]
    record = scalars(seconds, images[0], span)
    self.spans[span] = (dict.fromkeys(KINDS, 0.0), [0])
    return record

  def session(self):
    """The session's totals for the run record: {kind: s, 'images',
    'cache_lookups', 'cache_hits'} (the persistent compilation cache's)."""
    seconds, images = self.spans['session']
    cache = collections.Counter(_CACHE_EVENTS)
    cache.subtract(self.cache_start)
    return {**{k: round(v, 2) for k, v in seconds.items()},
            'images': images[0],
            'cache_lookups': cache['compile_requests_use_cache'],
            'cache_hits': cache['cache_hits']}


def images_per_s(seconds, images):
  """The training rate: `images` over the input and steps seconds."""
  training = seconds['input'] + seconds['steps']
  return images / training if training else 0.0


def sessions_timed(sessions):
  """[(session number from 1, its `TimeSplit.session` totals)] of a run
  record's sessions; those from before fer_jax measured it have none."""
  return [(k, s['time']) for k, s in enumerate(sessions, start=1)
          if 'time' in s]


def scalars(seconds, images, prefix):
  """Metric names and values of seconds per kind and the training rate."""
  return {**{f'{prefix}/{k}_s': round(v, 3) for k, v in seconds.items()},
          f'{prefix}/images_per_s': round(images_per_s(seconds, images), 1)}


def describe(totals):
  """One line of a session's totals (`TimeSplit.session`)."""
  wall = sum(totals[k] for k in KINDS)
  parts = ', '.join(f'{k} {totals[k]:.1f} s ({totals[k] / wall:.0%})'
                    for k in KINDS if wall)
  rate = images_per_s(totals, totals['images'])
  cache = (f"; {totals['cache_hits']} of {totals['cache_lookups']} programs "
           'from the persistent compilation cache' if totals['cache_lookups']
           else '; no persistent compilation cache')
  return (f'Wall time {wall:.1f} s: {parts}; {rate:.0f} images/s while '
          f'training{cache}')
