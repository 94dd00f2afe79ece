"""The package's shape: every module imports on its own, the commands import
together, no import cycle, no module too long to read in one sitting."""
import ast
import json
import pathlib
import subprocess
import sys

from conftest import REPO, run_env

PACKAGE = pathlib.Path(REPO) / 'fer_jax'
MAX_LINES = 450


def _modules():
  """{dotted name: path} of every module of fer_jax."""
  found = {}
  for path in sorted(PACKAGE.rglob('*.py')):
    parts = path.relative_to(REPO).with_suffix('').parts
    if parts[-1] == '__init__':
      parts = parts[:-1]
    found['.'.join(parts)] = path
  return found


def _imports(name, path, known):
  """The fer_jax modules that module `name` imports anywhere in its body,
  function-local imports included."""
  package = name if path.name == '__init__.py' else name.rpartition('.')[0]
  out = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      targets = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ''
      if node.level:
        anchor = package.split('.')[:len(package.split('.')) - node.level + 1]
        base = '.'.join(anchor + ([base] if base else []))
      # `from a import b` imports the module a.b when there is one.
      targets = [f'{base}.{a.name}' if f'{base}.{a.name}' in known else base
                 for a in node.names]
    else:
      continue
    out.update(t for t in targets if t in known and t != name)
  return out


def find_cycle(graph):
  """One import cycle of `graph` ({module: imported modules}) as a list of
  modules, or None."""
  state, stack = {}, []

  def visit(node):
    state[node] = 'open'
    stack.append(node)
    for other in sorted(graph[node]):
      if state.get(other) == 'open':
        return stack[stack.index(other):] + [other]
      if other not in state and (cycle := visit(other)):
        return cycle
    state[node] = 'done'
    stack.pop()
    return None

  for node in sorted(graph):
    if node not in state and (cycle := visit(node)):
      return cycle
  return None


def test_the_cycle_finder_finds_a_cycle_through_a_function_local_import():
  graph = {'a': {'b'}, 'b': {'c'}, 'c': {'a'}, 'd': set()}
  assert find_cycle(graph) == ['a', 'b', 'c', 'a']
  assert find_cycle({'a': {'b'}, 'b': set()}) is None


def test_the_package_has_no_import_cycle():
  modules = _modules()
  graph = {name: _imports(name, path, modules)
           for name, path in modules.items()}
  # The walk sees the imports that once made cycles.
  assert 'fer_jax.weights' in graph['fer_jax.train']
  assert 'fer_jax.data.stylized_dataset' in graph['fer_jax.data.pipeline']
  assert find_cycle(graph) is None, ' -> '.join(find_cycle(graph))


def test_no_module_is_longer_than_a_sitting():
  long = {name: n for name, path in _modules().items()
          if (n := len(path.read_text().splitlines())) > MAX_LINES}
  assert not long, f'modules over {MAX_LINES} lines: {long}'


def test_the_package_does_not_import_configs():
  for name, path in _modules().items():
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
      if isinstance(node, ast.ImportFrom):
        assert (node.module or '').split('.')[0] != 'configs', name
      elif isinstance(node, ast.Import):
        assert all(a.name.split('.')[0] != 'configs' for a in node.names), name


def _import_alone(module):
  result = subprocess.run([sys.executable, '-c', f'import {module}'],
                          cwd=REPO, env=run_env(), capture_output=True,
                          text=True, timeout=300, check=False)
  return module, result.returncode, result.stderr.strip().splitlines()[-1:]


# Imports each fer_jax module first, in a child forked from an interpreter
# that has imported the third-party libraries only: fresh as far as fer_jax
# is concerned, which is what an import cycle depends on, without paying
# JAX's import once per module.
_EACH_ALONE = """
import json, os, sys, traceback
import absl, cv2, flax, grain, jax, ml_collections, numpy, optax, PIL
import orbax.checkpoint, tensorflow_datasets
assert not any(name.startswith('fer_jax') for name in sys.modules)
failed = []
for module in sys.argv[1:]:
  pid = os.fork()
  if pid == 0:
    try:
      __import__(module)
      os._exit(0)
    except BaseException:
      traceback.print_exc()
      os._exit(1)
  if os.waitpid(pid, 0)[1]:
    failed.append(module)
print(json.dumps(failed))
"""


def test_every_module_imports_first_in_a_fresh_interpreter():
  # A module that cannot import shows that a failure is seen.
  modules = [*_modules(), 'fer_jax.no_such_module']
  result = subprocess.run([sys.executable, '-c', _EACH_ALONE, *modules],
                          cwd=REPO, env=run_env(), capture_output=True,
                          text=True, timeout=600, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  failed = json.loads(result.stdout.strip().splitlines()[-1])
  assert failed == ['fer_jax.no_such_module'], result.stderr[-3000:]


def test_the_commands_import_together_in_one_process():
  # Their flags (--data_dir in two of them) are defined when each runs.
  _, code, error = _import_alone('fer_jax.report, fer_jax.bench, '
                                 'fer_jax.ablate, fer_jax.predict, '
                                 'fer_jax.pretrained, fer_jax.export, '
                                 'fer_jax.convert')
  assert code == 0, error
