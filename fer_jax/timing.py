"""Timing on a noisy machine: every figure is a median, and what is
compared is timed in interleaved rounds so that a slow spell of the machine
(seconds to minutes on the 2-core CPUs here) hits neighbours alike.
`fer_jax.bench` and `fer_jax.bench_kernels` time with it.
"""
import statistics
import time

import jax
import jax.numpy as jnp


def seconds(fn, steps):
  """Median seconds a call over `steps` calls."""
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def interleaved_rounds(fns, steps, rounds):
  """Each warmed-up fn's seconds a call in each of `rounds` rounds (the
  median of its `steps` calls there), all fns timed in turn within each
  round, so that a slow spell of the machine hits neighbours alike."""
  for fn in fns:
    jax.block_until_ready(fn())  # warm-up, compilation included
  times = [[] for _ in fns]
  for _ in range(rounds):
    for fn, samples in zip(fns, times):
      samples.append(seconds(fn, steps))
  return times


def interleaved_seconds(fns, steps, rounds):
  """Median over the rounds of `interleaved_rounds`, for each fn."""
  return [statistics.median(samples)
          for samples in interleaved_rounds(fns, steps, rounds)]


def matmul_gflops(n=2048, steps=5):
  """This machine's float32 matmul rate, the yardstick for the others."""
  a = jnp.ones((n, n), jnp.float32)
  matmul = jax.jit(lambda a: a @ a)
  return 2 * n**3 / interleaved_seconds([lambda: matmul(a)], steps, 1)[0] / 1e9
