"""Convolutions on every platform, with the formulation measured fastest
for each shape on XLA:CPU.

`conv2d` and `depthwise_conv2d` are the one place the models convolve. On
GPU and TPU they are XLA's convolution; on CPU (behind
`lax.platform_dependent`) `_cpu_forward` picks a formulation per shape, and
its gradients are that formulation's, hand-written where autodiff's cost
more. The parameters are the same on every platform; `tests/test_layers.py`
checks every formulation against `lax.conv_general_dilated`, forward and
gradients, and which one each shape takes. `python -m fer_jax.bench
--modes=kernels` times each formulation against XLA's convolution on a shape
it is chosen for (`fer_jax.bench_kernels`), and the other modes in a model.
"""
import functools

import jax
import jax.numpy as jnp
from jax import lax
import numpy as np


def pads(x_shape, kernel_shape, strides, padding):
  if isinstance(padding, str):
    padding = lax.padtype_to_pads(x_shape[1:3], kernel_shape[:2], strides,
                                  padding)
  return tuple(tuple(p) for p in padding)


def _xla_conv(x, kernel, strides, padding):
  return lax.conv_general_dilated(x, kernel, strides, padding,
                                  dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


def taps(x, kernel_shape, strides, padding):
  """The input window each kernel tap (i, j) multiplies: {(i, j): window}."""
  kh, kw = kernel_shape[:2]
  x = jnp.pad(x, ((0, 0), padding[0], padding[1], (0, 0)))
  out_h = (x.shape[1] - kh) // strides[0] + 1
  out_w = (x.shape[2] - kw) // strides[1] + 1
  return {(i, j): lax.slice(
      x, (0, i, j, 0),
      (x.shape[0], i + (out_h - 1) * strides[0] + 1,
       j + (out_w - 1) * strides[1] + 1, x.shape[3]),
      (1, strides[0], strides[1], 1))
          for i in range(kh) for j in range(kw)}


def _tap_range(size, kernel, stride, pad):
  """For each kernel tap t along one axis: (first output, last output) whose
  input index o * stride + t - pad falls inside [0, size), or None."""
  lo, hi = pad
  outputs = (size + lo + hi - kernel) // stride + 1
  ranges = []
  for t in range(kernel):
    first = max(0, -((t - lo) // stride))  # ceil((lo - t) / stride)
    last = min(outputs - 1, (size - 1 + lo - t) // stride)
    ranges.append((first, last) if first <= last else None)
  return outputs, ranges


def _shifted_matmul_conv(x, kernel, strides, padding):
  """The convolution as a sum over kernel taps of products with windows of
  the padded input. With one input channel XLA fuses it all into one loop of
  broadcast multiply-adds."""
  return sum(jnp.einsum('bhwc,cd->bhwd', window, kernel[i, j])
             for (i, j), window in taps(x, kernel.shape, strides,
                                         padding).items())


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _one_channel_conv(x, kernel, strides, padding):
  """A convolution of one input channel: forward and input gradient as
  shifted products (broadcast multiply-adds, which XLA fuses), the kernel
  gradient as XLA's convolution, the faster of each on XLA:CPU."""
  return _shifted_matmul_conv(x, kernel, strides, padding)


def _one_channel_conv_fwd(x, kernel, strides, padding):
  return _one_channel_conv(x, kernel, strides, padding), (x, kernel)


def _one_channel_conv_bwd(strides, padding, residuals, grad):
  x, kernel = residuals
  _, x_vjp = jax.vjp(
      lambda x: _shifted_matmul_conv(x, kernel, strides, padding), x)
  _, kernel_vjp = jax.vjp(lambda k: _xla_conv(x, k, strides, padding), kernel)
  return x_vjp(grad)[0], kernel_vjp(grad)[0]


_one_channel_conv.defvjp(_one_channel_conv_fwd, _one_channel_conv_bwd)


def _valid_taps_conv(x, kernel, strides, padding):
  """The convolution as a sum over kernel taps of matrix products, each over
  only the output pixels where its tap is off the padding (a 3x3 SAME conv
  on a 2x2 map: 4 of every 9 products)."""
  rows, row_ranges = _tap_range(x.shape[1], kernel.shape[0], strides[0],
                                padding[0])
  cols, col_ranges = _tap_range(x.shape[2], kernel.shape[1], strides[1],
                                padding[1])
  terms = []
  for i, row_range in enumerate(row_ranges):
    for j, col_range in enumerate(col_ranges):
      if row_range is None or col_range is None:
        continue
      (r0, r1), (c0, c1) = row_range, col_range
      start = (r0 * strides[0] + i - padding[0][0],
               c0 * strides[1] + j - padding[1][0])
      window = lax.slice(
          x, (0, *start, 0),
          (x.shape[0], start[0] + (r1 - r0) * strides[0] + 1,
           start[1] + (c1 - c0) * strides[1] + 1, x.shape[3]),
          (1, *strides, 1))
      terms.append(jnp.pad(
          jnp.einsum('bhwc,cd->bhwd', window, kernel[i, j]),
          ((0, 0), (r0, rows - 1 - r1), (c0, cols - 1 - c1), (0, 0))))
  return sum(terms)


def _pair_kernel(kernel):
  """The kernel over column pairs of `_column_pairs_conv`: output pair p
  reads padded columns 2p .. 2p + kw, i.e. column pairs p .. p + kw // 2."""
  kh, kw, channels, features = kernel.shape
  taps = kw // 2 + 1
  # Tap t of the pairs maps input column a of its pair to output column o
  # of the output pair through the original tap 2t + a - o.
  j = (2 * np.arange(taps)[:, None, None] + np.arange(2)[:, None]
       - np.arange(2))
  inside = (j >= 0) & (j < kw)
  pair_kernel = jnp.where(inside[None, :, :, :, None, None],
                          kernel[:, np.clip(j, 0, kw - 1)], 0.)
  return pair_kernel.transpose(0, 1, 2, 4, 3, 5).reshape(
      kh, taps, 2 * channels, 2 * features)


def _padded_column_pairs_conv(x, kernel, padding):
  """Pairs of the padded map's columns: the pad is a pass over x."""
  batch, _, width, _ = x.shape
  kw, features = kernel.shape[1], kernel.shape[3]
  left, right = padding[1]
  out_width = width + left + right - kw + 1
  pairs = -(-out_width // 2)
  padded = 2 * (pairs + kw // 2)
  x = jnp.pad(x, ((0, 0), (0, 0), (left, padded - width - left), (0, 0)))
  x = x.reshape(batch, x.shape[1], padded // 2, -1)
  y = _xla_conv(x, _pair_kernel(kernel), (1, 1), (padding[0], (0, 0)))
  return y.reshape(batch, y.shape[1], 2 * pairs, features)[:, :, :out_width]


def _reshaped_column_pairs_conv(x, kernel, padding):
  """Pairs of x's own columns, a reshape (free for an even width), padded by
  XLA's convolution in whole pairs: an odd left padding takes one column
  more, and the output drops one."""
  batch, _, width, _ = x.shape
  kw, features = kernel.shape[1], kernel.shape[3]
  left, right = padding[1]
  out_width = width + left + right - kw + 1
  shift = left % 2
  pairs = -(-(out_width + shift) // 2)
  if width % 2:
    x = jnp.pad(x, ((0, 0), (0, 0), (0, 1), (0, 0)))
  x = x.reshape(batch, x.shape[1], x.shape[2] // 2, -1)
  pad_left = (left + shift) // 2
  pad_right = max(0, pairs + kw // 2 - x.shape[2] - pad_left)
  y = _xla_conv(x, _pair_kernel(kernel), (1, 1),
                (padding[0], (pad_left, pad_right)))
  y = y.reshape(batch, y.shape[1], 2 * y.shape[2], features)
  return y[:, :, shift:shift + out_width]


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _column_pairs_conv(x, kernel, strides, padding):
  """A stride-1 convolution on a map whose pairs of columns are taken as
  pixels of twice the channels, by XLA's convolution with a kernel of the
  same pairs: a 3x3 kernel over C -> D channels becomes a 3x2 one over
  2C -> 2D, 4/3 of the products, which XLA's convolution runs at several
  times the rate of the narrow ones.

  The forward pairs x's own columns: padding x first is a pass that XLA
  fuses with x's producer (in VGG19 the first convolution's nine shifted
  products, BatchNorm and ReLU), and that fusion's index arithmetic runs
  far slower than the producer itself. The gradients are the padded
  formulation's: the reshaped one's are slower (a VGG19 train step in
  `python -m fer_jax.bench` shows it).
  """
  del strides  # always (1, 1) here
  return _reshaped_column_pairs_conv(x, kernel, padding)


def _column_pairs_conv_fwd(x, kernel, strides, padding):
  return _column_pairs_conv(x, kernel, strides, padding), (x, kernel)


def _column_pairs_conv_bwd(strides, padding, residuals, grad):
  del strides
  x, kernel = residuals
  _, vjp = jax.vjp(
      lambda x, k: _padded_column_pairs_conv(x, k, padding), x, kernel)
  return vjp(grad)


_column_pairs_conv.defvjp(_column_pairs_conv_fwd, _column_pairs_conv_bwd)


def _out_pixels(x_shape, kernel_shape, strides, padding):
  return (_tap_range(x_shape[1], kernel_shape[0], strides[0], padding[0])[0]
          * _tap_range(x_shape[2], kernel_shape[1], strides[1], padding[1])[0])


def _cpu_forward(x_shape, kernel_shape, strides, padding):
  """The faster formulation on XLA:CPU for this shape, gradients included
  (measured with `compiler_options()`, batch 32-128; `python -m
  fer_jax.bench --modes=kernels` times each against XLA's convolution).

  The rule, as measured: XLA's convolution wins from maps of 5x5 and wide
  channels, but collapses on smaller maps (valid-tap products instead), is
  slower on one input channel (shifted products, which fuse into broadcast
  multiply-adds) and on few channels (columns paired as channels, which
  pays for its extra products). A 1x1 kernel is one matrix product.
  """
  if (kernel_shape[:2] == (1, 1)
      or _out_pixels(x_shape, kernel_shape, strides, padding) <= 16):
    return _valid_taps_conv
  if kernel_shape[2] == 1:
    # Not _valid_taps_conv: its nine padded products are not fused here and
    # cost several times as much.
    return _one_channel_conv
  if strides == (1, 1) and max(kernel_shape[2:]) <= 8:
    # From 16 channels on it loses to XLA's (8 -> 16 and 16 -> 8 gained
    # under 10% when measured, so they stay XLA's).
    return _column_pairs_conv
  return _xla_conv


def conv2d(x, kernel, strides=(1, 1), padding='SAME'):
  """NHWC x HWIO convolution: the one place the models convolve.

  On GPU and TPU this is `lax.conv_general_dilated`. On CPU it takes the
  formulation measured fastest for its shape (`_cpu_forward`), and its
  gradients are that formulation's. The parameters are the same on every
  platform. Jit with `compiler_options()`: XLA:CPU's default convolution is
  far slower on these shapes.
  """
  strides, padding = tuple(strides), pads(x.shape, kernel.shape, strides,
                                           padding)
  cpu = _cpu_forward(x.shape, kernel.shape, strides, padding)
  return lax.platform_dependent(
      x, kernel,
      cpu=functools.partial(cpu, strides=strides, padding=padding),
      default=functools.partial(_xla_conv, strides=strides, padding=padding))


def compiler_options():
  """`jax.jit`'s compiler_options for the models on the default backend.

  XLA:CPU hands convolutions to YNNPACK by default, which on the 2-core CPUs
  here ran the VGG family's at about half the rate XLA's own (Eigen) does
  with these options; matrix products go to XLA's own emitter too, where
  the many small ones (SE, valid-tap products at small widths) cost less.
  Reductions stay with YNNPACK. `python -m fer_jax.bench` reports each
  step's achieved GFLOP/s beside the machine's matmul rate. None off CPU.
  """
  if jax.default_backend() != 'cpu':
    return None
  # XLA's default list less INDIVIDUAL_CONVOLUTION and INDIVIDUAL_DOT (the
  # option cannot remove types from the default as the flag's '-' prefix
  # does).
  return {'xla_cpu_experimental_ynn_fusion_type':
              'LIBRARY_FUSION_TYPE_REDUCE'}


def init_compiler_options():
  """`jax.jit`'s compiler_options for initialising a model's variables.

  The initialisers' random bits (threefry, dozens of times) take XLA:CPU's
  optimising backend several times longer to compile than to run once;
  unoptimised, through the elemental emitters rather than the fusion
  emitters, they compile in a fraction of that. The values differ from
  optimised code's in the last bit of a few uniform draws at most. None off
  CPU.
  """
  if jax.default_backend() != 'cpu':
    return None
  return {'xla_backend_optimization_level': 0,
          'xla_cpu_use_fusion_emitters': False}


def _chunk(batch, image_bytes, budget):
  """The most images, dividing the batch, whose bytes fit in `budget`."""
  limit = max(1, budget // image_bytes)
  return max(n for n in range(1, min(limit, batch) + 1) if batch % n == 0)


def _split(a, chunk):
  return a.reshape(a.shape[0] // chunk, chunk, *a.shape[1:])


def _transposed_pads(kernel_shape, strides, padding):
  """Padding under which the input gradient is a stride-1 convolution of the
  output gradient with the flipped kernel; None where it is not."""
  pads = tuple((k - 1 - lo, k - 1 - hi)
               for k, (lo, hi) in zip(kernel_shape[:2], padding))
  if strides != (1, 1) or min(min(p) for p in pads) < 0:
    return None
  return pads


def _xla_depthwise(x, kernel, strides, padding):
  return lax.conv_general_dilated(
      x, kernel, strides, padding, dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
      feature_group_count=x.shape[-1])


def _shifted_depthwise(x, kernel, strides, padding):
  return sum(window * kernel[i, j, 0]
             for (i, j), window in taps(x, kernel.shape, strides,
                                         padding).items())


# Gradient chunks of about this many bytes (input and output of the images):
# the k*k shifted copies then stay in cache (the depthwise cases of
# `python -m fer_jax.bench --modes=kernels`).
_DEPTHWISE_CHUNK_BYTES = 8 << 20


def _chunked_depthwise(x, kernel, strides, padding):
  chunk = _chunk(x.shape[0], x[0].size * 8, _DEPTHWISE_CHUNK_BYTES)
  out = lax.map(lambda x: _shifted_depthwise(x, kernel, strides, padding),
                _split(x, chunk))
  return out.reshape(-1, *out.shape[2:])


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _cpu_depthwise(x, kernel, strides, padding):
  # One fused loop: inside a network, chunks cost more to stack than their
  # cache hits win (EfficientNet-B0's inference in `fer_jax.bench`).
  return _shifted_depthwise(x, kernel, strides, padding)


def _cpu_depthwise_fwd(x, kernel, strides, padding):
  return _cpu_depthwise(x, kernel, strides, padding), (x, kernel)


def _cpu_depthwise_bwd(strides, padding, residuals, grad):
  """Input gradient: for stride 1 a depthwise conv of the flipped kernel;
  kernel gradient: per-tap sums, accumulated over chunks of the batch."""
  x, kernel = residuals
  kh, kw = kernel.shape[:2]
  pads = _transposed_pads(kernel.shape, strides, padding)
  if pads is not None:
    x_grad = _chunked_depthwise(grad, kernel[::-1, ::-1], strides, pads)
  else:
    _, vjp = jax.vjp(
        lambda x: _shifted_depthwise(x, kernel, strides, padding), x)
    x_grad, = vjp(grad)

  def accumulate(total, chunk_of):
    x, grad = chunk_of
    windows = taps(x, kernel.shape, strides, padding)
    return total + jnp.stack([
        jnp.sum(windows[i, j] * grad, axis=(0, 1, 2))
        for i in range(kh) for j in range(kw)]).reshape(kernel.shape), None

  chunk = _chunk(x.shape[0], x[0].size * 8, _DEPTHWISE_CHUNK_BYTES)
  kernel_grad, _ = lax.scan(accumulate, jnp.zeros_like(kernel),
                            (_split(x, chunk), _split(grad, chunk)))
  return x_grad, kernel_grad


_cpu_depthwise.defvjp(_cpu_depthwise_fwd, _cpu_depthwise_bwd)


def depthwise_conv2d(x, kernel, strides=(1, 1), padding='SAME'):
  """NHWC x (kh, kw, 1, C) depthwise convolution, fast on CPU too.

  XLA:CPU runs depthwise convolutions at a small fraction of a GFLOP/s
  (`python -m fer_jax.bench --modes=kernels`); on CPU this is instead a
  sum of k*k shifted, scaled copies, with a custom gradient of the same kind
  over cache-sized chunks of the batch (`_cpu_depthwise_bwd`). On GPU and
  TPU it is `lax.conv_general_dilated` with one group per channel.
  """
  strides, padding = tuple(strides), pads(x.shape, kernel.shape, strides,
                                           padding)
  return lax.platform_dependent(
      x, kernel,
      cpu=functools.partial(_cpu_depthwise, strides=strides,
                            padding=padding),
      default=functools.partial(_xla_depthwise, strides=strides,
                                padding=padding))
