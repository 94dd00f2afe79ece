"""Each CPU fast path of `fer_jax.models` against the XLA path it replaces,
on a shape it is chosen for: `python -m fer_jax.bench --modes=kernels`.

The models take these paths on CPU only (behind `lax.platform_dependent`;
GPUs and TPUs run XLA's). Each case times the forward pass and every
gradient, as training runs them, jitted with `cpu_conv.compiler_options()`,
the fast path and XLA's in turn within each round; the ratio printed is the
median over the rounds of XLA's time over the fast path's in that round. A
path earns its place while that ratio stays above 1 on the machines the
project is run on, and this is where to look when it stops.
"""
import functools
import statistics

import jax
import jax.numpy as jnp
import numpy as np

from fer_jax import timing
from fer_jax.models import batch_norm
from fer_jax.models import cpu_conv
from fer_jax.models import pooling


def _conv(x_shape, k_shape):
  pads = cpu_conv.pads(x_shape, k_shape, (1, 1), 'SAME')
  fast = cpu_conv._cpu_forward(x_shape, k_shape, (1, 1), pads)  # pylint: disable=protected-access
  return (fast.__name__,
          functools.partial(fast, strides=(1, 1), padding=pads),
          functools.partial(cpu_conv._xla_conv, strides=(1, 1), padding=pads),  # pylint: disable=protected-access
          (x_shape, k_shape))


def _depthwise(x_shape, k_shape):
  pads = cpu_conv.pads(x_shape, k_shape, (1, 1), 'SAME')
  partial = lambda f: functools.partial(f, strides=(1, 1), padding=pads)
  return ('_cpu_depthwise', partial(cpu_conv._cpu_depthwise),  # pylint: disable=protected-access
          partial(cpu_conv._xla_depthwise), (x_shape, k_shape))  # pylint: disable=protected-access


def _batch_norm(x_shape):
  c = x_shape[-1]
  partial = lambda f: functools.partial(f, epsilon=1e-5)
  return ('_fused_batch_norm_act',
          partial(batch_norm._fused_batch_norm_act),  # pylint: disable=protected-access
          partial(batch_norm._plain_batch_norm_act),  # pylint: disable=protected-access
          (x_shape, (c,), (c,), (c,)))


def _max_pool(x_shape):
  partial = lambda f: functools.partial(f, window=2, stride=2, padding=0)
  return ('_cpu_max_pool', partial(pooling._cpu_max_pool),  # pylint: disable=protected-access
          partial(pooling._xla_max_pool), (x_shape,))  # pylint: disable=protected-access


def cases():
  """(what, fast path's name, fast fn, XLA's fn, argument shapes): the VGG
  family's shapes at batch 128 (64 at the narrow widths) and
  EfficientNet-B0's at batch 32."""
  return [
      ('conv 44x44x1 -> 64, batch 128', *_conv((128, 44, 44, 1),
                                              (3, 3, 1, 64))),
      ('conv 44x44x8 -> 8, batch 64', *_conv((64, 44, 44, 8), (3, 3, 8, 8))),
      ('conv 44x44x4 -> 8, batch 64', *_conv((64, 44, 44, 4), (3, 3, 4, 8))),
      ('conv 2x2x512 -> 512, batch 128', *_conv((128, 2, 2, 512),
                                               (3, 3, 512, 512))),
      ('conv 1x1 7x7x320 -> 1280, batch 32', *_conv((32, 7, 7, 320),
                                                   (1, 1, 320, 1280))),
      ('depthwise 3x3 56x56x144, batch 32', *_depthwise((32, 56, 56, 144),
                                                        (3, 3, 1, 144))),
      ('depthwise 5x5 28x28x240, batch 32', *_depthwise((32, 28, 28, 240),
                                                        (5, 5, 1, 240))),
      ('BatchNorm+PReLU 44x44x8, batch 64', *_batch_norm((64, 44, 44, 8))),
      ('BatchNorm+PReLU 22x22x32, batch 128', *_batch_norm((128, 22, 22,
                                                            32))),
      ('max pool 2x2 44x44x16, batch 128', *_max_pool((128, 44, 44, 16))),
  ]


def _forward_and_gradients(fn, shapes, seed):
  """A jitted call computing fn's output and its gradients with respect to
  every argument, on fixed random arguments."""
  rng = np.random.default_rng(seed)
  args = [jnp.asarray(rng.normal(size=s), jnp.float32) for s in shapes]
  out_shape = jax.eval_shape(fn, *args)
  cotangent = jax.tree.map(
      lambda o: jnp.asarray(rng.normal(size=o.shape), jnp.float32), out_shape)

  def run(*args):
    out, vjp = jax.vjp(fn, *args)
    return out, vjp(cotangent)

  compiled = jax.jit(run, compiler_options=cpu_conv.compiler_options())
  return lambda: compiled(*args)


def time_kernels(steps, rounds):
  """A record per case: its fast path's and XLA's milliseconds (medians
  over the rounds) and the median of their per-round ratio."""
  records = []
  for what, name, fast, xla, shapes in cases():
    fns = [_forward_and_gradients(f, shapes, seed=0) for f in (fast, xla)]
    ours, theirs = timing.interleaved_rounds(fns, steps, rounds)
    records.append({
        'name': f'kernel/{name}', 'case': what, 'path': name,
        'ms': 1000 * statistics.median(ours),
        'xla_ms': 1000 * statistics.median(theirs),
        'xla_over_ours': statistics.median(
            t / o for o, t in zip(ours, theirs))})
  return records


def table(records):
  """Markdown lines: one row per case."""
  lines = ['| case | CPU path | its ms | XLA ms | XLA / CPU path |',
           '|---|---|---|---|---|']
  lines += [f"| {r['case']} | `{r['path']}` | {r['ms']:.1f} | "
            f"{r['xla_ms']:.1f} | {r['xla_over_ours']:.2f}x |"
            for r in records]
  return lines
