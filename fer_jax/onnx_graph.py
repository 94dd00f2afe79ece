"""A JAX function as an ONNX graph: `to_onnx(fn, example, ...)`.

The function is traced to a jaxpr (with a symbolic batch size, so that the
graph takes any batch) and each primitive is written as ONNX operators
with the `onnx` package, in opset `OPSET`. Why not a converter: jax2onnx,
the maintained one, pins orbax-checkpoint below the version this project
pins, and the jax2tf + tf2onnx route no longer works on current JAX.

Rules, and why:
- `lax.platform_dependent` (the CPU formulations of `fer_jax.models`)
  takes its default branch: the plain XLA path, the same computation a GPU
  runs; the CPU branches' strided-slice tricks would only slow other
  runtimes down.
- Calls (jit, custom_jvp/custom_vjp) are inlined; their derivative rules
  are irrelevant to inference.
- An equation whose inputs are all constants (the weights) and whose
  output has a known shape is evaluated at export time (BatchNorm's scale
  and shift, transposed kernels), so the graph holds folded weights.
- A primitive without a rule here is refused in one line naming it, never
  approximated. Among them gather: numpy-style indexing traces to it under
  a symbolic batch size, so code that is exported slices with `lax.slice`.
`tests/test_export.py` runs the graphs in onnxruntime against JAX.
"""
import string

import jax
from jax import export as jax_export
import jax.extend.core as jex
import numpy as np
import onnx
from onnx import helper
from onnx import numpy_helper

from fer_jax import errors

OPSET = 17  # onnxruntime, onnxruntime-web and TensorRT all run it
_INT64_MAX = np.iinfo(np.int64).max
# Folding an equation at export time is skipped above this many elements:
# a constant broadcast to a feature map would only bloat the file.
_FOLD_LIMIT = 1 << 22


def _static(shape):
  return all(isinstance(d, int) for d in shape)


def _same(a, b):
  """Whether two dimensions (ints or symbolic) are the same."""
  try:
    return bool(a == b)
  except jex.InconclusiveDimensionOperation:
    return False


class _Graph:
  """The ONNX nodes, initializers and names being built."""

  def __init__(self):
    self.nodes, self.initializers, self.count = [], [], 0

  def name(self, hint='t'):
    self.count += 1
    return f'{hint}_{self.count}'

  def const(self, value, hint='c'):
    name = self.name(hint)
    self.initializers.append(numpy_helper.from_array(np.asarray(value), name))
    return name

  def ints(self, values):
    return self.const(np.asarray(values, np.int64), 'shape')

  def op(self, op_type, inputs, **attributes):
    """A node's output name; numpy inputs become initializers."""
    inputs = [self.const(x) if isinstance(x, np.ndarray) else x
              for x in inputs]
    out = self.name(op_type.lower())
    self.nodes.append(helper.make_node(op_type, inputs, [out], **attributes))
    return out


class _Converter:
  """Walks a jaxpr; `env` maps each variable to an ONNX name or, while it
  is known at export time, to its numpy value."""

  def __init__(self, graph):
    self.g = graph
    self.env = {}

  def read(self, var):
    if isinstance(var, jex.Literal):
      return np.asarray(var.val, var.aval.dtype)
    return self.env[var]

  def run(self, jaxpr, consts, args):
    for var, value in zip(jaxpr.constvars, consts):
      self.env[var] = np.asarray(value)
    for var, value in zip(jaxpr.invars, args):
      self.env[var] = value
    for eqn in jaxpr.eqns:
      self.equation(eqn)
    return [self.read(v) for v in jaxpr.outvars]

  def equation(self, eqn):
    inputs = [self.read(v) for v in eqn.invars]
    name = eqn.primitive.name
    params = eqn.params
    if name == 'platform_index':
      outs = [np.asarray(_default_branch(params['platforms']), np.int32)]
    elif name == 'cond':
      index = inputs[0]
      if not isinstance(index, np.ndarray):
        raise errors.UserError('cannot export a data-dependent branch '
                               '(lax.cond) to ONNX')
      branch = params['branches'][int(index)]
      outs = self.inline(branch, inputs[1:])
    elif name == 'jit':
      outs = self.inline(params['jaxpr'], inputs)
    elif name in ('custom_jvp_call', 'custom_vjp_call'):
      outs = self.inline(params['call_jaxpr'], inputs)
    elif all(isinstance(x, np.ndarray) for x in inputs) and all(
        _static(v.aval.shape) and np.prod(v.aval.shape) <= _FOLD_LIMIT
        for v in eqn.outvars):
      outs = eqn.primitive.bind(*inputs, **params)
      outs = [np.asarray(o) for o in (outs if eqn.primitive.multiple_results
                                      else [outs])]
    else:
      rule = _RULES.get(name)
      if rule is None:
        raise errors.UserError(f'cannot export the JAX primitive {name!r} '
                               'to ONNX (fer_jax/onnx_graph.py has no rule)')
      outs = [rule(self, eqn, *inputs)]
    for var, value in zip(eqn.outvars, outs):
      self.env[var] = value

  def inline(self, closed, inputs):
    """The outputs of a called `ClosedJaxpr`, its equations written here."""
    return _Converter(self.g).run(closed.jaxpr, closed.consts, inputs)


def _default_branch(platforms):
  """The index of `lax.platform_dependent`'s default branch (None in its
  platforms), else of its CUDA one: the plain XLA path."""
  for i, names in enumerate(platforms):
    if names is None or 'cuda' in names:
      return i
  raise errors.UserError(f'cannot export code written only for the '
                         f'platforms {platforms} to ONNX')


def _dtype(aval):
  return helper.np_dtype_to_tensor_dtype(np.dtype(aval.dtype))


def _elementwise(op_type):
  return lambda c, eqn, *xs: c.g.op(op_type, xs)


def _not_equal(c, eqn, x, y):
  return c.g.op('Not', [c.g.op('Equal', [x, y])])


def _log1p(c, eqn, x):
  one = c.g.const(np.ones((), eqn.invars[0].aval.dtype))
  return c.g.op('Log', [c.g.op('Add', [x, one])])


def _rsqrt(c, eqn, x):
  return c.g.op('Reciprocal', [c.g.op('Sqrt', [x])])


def _integer_pow(c, eqn, x):
  y = eqn.params['y']
  exponent = c.g.const(np.asarray(y, eqn.invars[0].aval.dtype))
  return c.g.op('Pow', [x, exponent])


def _select_n(c, eqn, which, *cases):
  if len(cases) != 2:
    raise errors.UserError('cannot export lax.select_n of more than two '
                           'cases to ONNX')
  if eqn.invars[0].aval.dtype != np.bool_:
    which = c.g.op('Cast', [which], to=onnx.TensorProto.BOOL)
  return c.g.op('Where', [which, cases[1], cases[0]])


def _convert(c, eqn, x):
  return c.g.op('Cast', [x], to=_dtype(eqn.outvars[0].aval))


def _shape_for_reshape(shape):
  symbolic = [i for i, d in enumerate(shape) if not isinstance(d, int)]
  if len(symbolic) > 1:
    raise errors.UserError(f'cannot export a reshape to {shape} (more than '
                           'one symbolic dimension) to ONNX')
  return [-1 if i in symbolic else d for i, d in enumerate(shape)]


def _reshape(c, eqn, x, *dynamic):
  if dynamic or eqn.params.get('dimensions'):
    raise errors.UserError('cannot export a dynamic reshape to ONNX')
  return c.g.op('Reshape', [x, c.g.ints(
      _shape_for_reshape(eqn.params['new_sizes']))])


def _broadcast_in_dim(c, eqn, x, *dynamic):
  if dynamic:
    raise errors.UserError('cannot export a dynamic broadcast to ONNX')
  shape, dims = eqn.params['shape'], eqn.params['broadcast_dimensions']
  operand = eqn.invars[0].aval.shape
  new_axes = [i for i in range(len(shape)) if i not in dims]
  if new_axes:
    x = c.g.op('Unsqueeze', [x, c.g.ints(new_axes)])
  # Expand's target: 1 where the operand already has the symbolic size
  # (Expand keeps it), the size elsewhere.
  current, target = [1] * len(shape), []
  for k, i in enumerate(dims):
    current[i] = operand[k] if isinstance(operand[k], int) else 1
  for i, d in enumerate(shape):
    if isinstance(d, int):
      target.append(d)
    elif i in dims and _same(operand[dims.index(i)], d):
      target.append(1)
    else:
      raise errors.UserError(f'cannot export a broadcast to the symbolic '
                             f'shape {shape} to ONNX')
  if current == target:
    return x
  return c.g.op('Expand', [x, c.g.ints(target)])


def _squeeze(c, eqn, x):
  return c.g.op('Squeeze', [x, c.g.ints(eqn.params['dimensions'])])


def _transpose(c, eqn, x):
  return c.g.op('Transpose', [x], perm=list(eqn.params['permutation']))


def _slice(c, eqn, x):
  shape = eqn.invars[0].aval.shape
  starts, limits = eqn.params['start_indices'], eqn.params['limit_indices']
  strides = eqn.params['strides'] or (1,) * len(starts)
  axes = [i for i in range(len(starts))
          if (starts[i], strides[i]) != (0, 1) or not _same(limits[i], shape[i])]
  for i in axes:
    if not all(isinstance(v, int) for v in (starts[i], limits[i])):
      raise errors.UserError('cannot export a slice of a symbolic '
                             'dimension to ONNX')
  return c.g.op('Slice', [x, c.g.ints([starts[i] for i in axes]),
                          c.g.ints([limits[i] for i in axes]),
                          c.g.ints(axes), c.g.ints([strides[i] for i in axes])])


def _rev(c, eqn, x):
  axes = list(eqn.params['dimensions'])
  n = len(axes)
  return c.g.op('Slice', [x, c.g.ints([-1] * n), c.g.ints([-_INT64_MAX] * n),
                          c.g.ints(axes), c.g.ints([-1] * n)])


def _concatenate(c, eqn, *xs):
  return c.g.op('Concat', xs, axis=eqn.params['dimension'])


def _stack(c, eqn, *xs):
  axis = c.g.ints([eqn.params['axis']])
  return c.g.op('Concat', [c.g.op('Unsqueeze', [x, axis]) for x in xs],
                axis=eqn.params['axis'])


def _pad(c, eqn, x, value):
  config = eqn.params['padding_config']
  if any(interior for _, _, interior in config):
    raise errors.UserError('cannot export interior padding to ONNX')
  pads = [lo for lo, _, _ in config] + [hi for _, hi, _ in config]
  return c.g.op('Pad', [x, c.g.ints(pads), value], mode='constant')


def _reduce(op_type):
  def rule(c, eqn, x):
    axes = list(eqn.params['axes'])
    if op_type == 'ReduceSum':  # axes an input from opset 13
      return c.g.op(op_type, [x, c.g.ints(axes)], keepdims=0)
    return c.g.op(op_type, [x], axes=axes, keepdims=0)
  return rule


def _argmax(c, eqn, x):
  axis, = eqn.params['axes']
  index = c.g.op('ArgMax', [x], axis=axis, keepdims=0)
  return c.g.op('Cast', [index], to=_dtype(eqn.outvars[0].aval))


def _dot_general(c, eqn, lhs, rhs):
  (lc, rc), (lb, rb) = eqn.params['dimension_numbers']
  ls, rs = eqn.invars[0].aval.shape, eqn.invars[1].aval.shape
  if not lb and not rb and lc == (len(ls) - 1,) and rc == (0,) and (
      len(rs) == 2):
    out = c.g.op('MatMul', [lhs, rhs])
  else:  # any other contraction, written out for Einsum
    letters = iter(string.ascii_lowercase)
    left = [next(letters) for _ in ls]
    right = [next(letters) for _ in rs]
    for i, j in zip(lc + lb, rc + rb):
      right[j] = left[i]
    out_letters = ([left[i] for i in lb]
                   + [l for i, l in enumerate(left) if i not in lc + lb]
                   + [r for j, r in enumerate(right) if j not in rc + rb])
    equation = f"{''.join(left)},{''.join(right)}->{''.join(out_letters)}"
    out = c.g.op('Einsum', [lhs, rhs], equation=equation)
  if eqn.outvars[0].aval.dtype != eqn.invars[0].aval.dtype:
    out = c.g.op('Cast', [out], to=_dtype(eqn.outvars[0].aval))
  return out


def _conv(c, eqn, lhs, rhs):
  p = eqn.params
  if any(d != 1 for d in p['lhs_dilation']) or p['batch_group_count'] != 1:
    raise errors.UserError('cannot export a transposed or batch-grouped '
                           'convolution to ONNX')
  # Each spec lists (batch or output, feature or input, spatial...) axes:
  # the permutation to ONNX's NCHW and OIHW.
  lhs_spec, rhs_spec, out_spec = p['dimension_numbers']
  x = c.g.op('Transpose', [lhs], perm=list(lhs_spec))
  w = (np.transpose(rhs, rhs_spec) if isinstance(rhs, np.ndarray)
       else c.g.op('Transpose', [rhs], perm=list(rhs_spec)))
  pads = [lo for lo, _ in p['padding']] + [hi for _, hi in p['padding']]
  y = c.g.op('Conv', [x, w], strides=list(p['window_strides']),
             dilations=list(p['rhs_dilation']), pads=pads,
             group=p['feature_group_count'])
  return c.g.op('Transpose', [y], perm=[int(i) for i in np.argsort(out_spec)])


def _max_pool(c, eqn, x):
  p = eqn.params
  window, strides = p['window_dimensions'], p['window_strides']
  rank = len(window)
  spatial = [i for i in range(rank)
             if window[i] != 1 or strides[i] != 1 or p['padding'][i] != (0, 0)]
  if rank != 4 or spatial != [1, 2] or any(
      d != 1 for d in (*p['base_dilation'], *p['window_dilation'])):
    raise errors.UserError('cannot export this max pooling (only NHWC '
                           'windows over height and width) to ONNX')
  y = c.g.op('Transpose', [x], perm=[0, 3, 1, 2])
  y = c.g.op('MaxPool', [y], kernel_shape=[window[1], window[2]],
             strides=[strides[1], strides[2]],
             pads=[p['padding'][1][0], p['padding'][2][0],
                   p['padding'][1][1], p['padding'][2][1]])
  return c.g.op('Transpose', [y], perm=[0, 2, 3, 1])


_RULES = {
    'add': _elementwise('Add'), 'sub': _elementwise('Sub'),
    'mul': _elementwise('Mul'), 'div': _elementwise('Div'),
    'max': _elementwise('Max'), 'min': _elementwise('Min'),
    'neg': _elementwise('Neg'), 'abs': _elementwise('Abs'),
    'exp': _elementwise('Exp'), 'log': _elementwise('Log'),
    'tanh': _elementwise('Tanh'), 'logistic': _elementwise('Sigmoid'),
    'sqrt': _elementwise('Sqrt'), 'erf': _elementwise('Erf'),
    'lt': _elementwise('Less'), 'gt': _elementwise('Greater'),
    'le': _elementwise('LessOrEqual'), 'ge': _elementwise('GreaterOrEqual'),
    'eq': _elementwise('Equal'), 'ne': _not_equal,
    'stop_gradient': _elementwise('Identity'),
    'log1p': _log1p, 'rsqrt': _rsqrt, 'integer_pow': _integer_pow,
    'select_n': _select_n, 'convert_element_type': _convert,
    'reshape': _reshape, 'broadcast_in_dim': _broadcast_in_dim,
    'squeeze': _squeeze,
    'transpose': _transpose, 'slice': _slice, 'rev': _rev,
    'concatenate': _concatenate, 'stack': _stack, 'pad': _pad,
    'reduce_sum': _reduce('ReduceSum'), 'reduce_max': _reduce('ReduceMax'),
    'reduce_min': _reduce('ReduceMin'), 'argmax': _argmax,
    'dot_general': _dot_general, 'conv_general_dilated': _conv,
    'reduce_window_max': _max_pool,
}


def to_onnx(fn, example, input_name, output_name, batch='batch',
            metadata=None, doc=''):
  """The `onnx.ModelProto` of `fn` applied to one array shaped like
  `example` (a `jax.ShapeDtypeStruct` whose first dimension is ignored:
  the graph takes any batch, named `batch`). `metadata`: {key: string},
  the model's metadata_props."""
  b, = jax_export.symbolic_shape(batch)
  spec = jax.ShapeDtypeStruct((b, *example.shape[1:]), example.dtype)
  closed = jax.make_jaxpr(fn)(spec)
  graph = _Graph()
  out, = _Converter(graph).run(closed.jaxpr, closed.consts, [input_name])
  out_aval = closed.jaxpr.outvars[0].aval
  graph.nodes.append(helper.make_node('Identity', [out], [output_name]))

  def info(name, aval):
    dims = [d if isinstance(d, int) else batch for d in aval.shape]
    return helper.make_tensor_value_info(name, _dtype(aval), dims)

  model = helper.make_model(
      helper.make_graph(graph.nodes, 'fer_jax', [info(input_name, spec)],
                        [info(output_name, out_aval)], graph.initializers,
                        doc_string=doc),
      opset_imports=[helper.make_opsetid('', OPSET)],
      producer_name='fer_jax')
  model.ir_version = 8  # the IR of opset 17: older runtimes load it
  helper.set_model_props(model, dict(metadata or {}))
  onnx.checker.check_model(model)
  return model
