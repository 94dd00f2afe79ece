"""The README's results table is what the committed result files give."""
import json
import shutil
import subprocess
import sys
import types

import pytest

from conftest import REPO, run_env
from fer_jax import errors
from fer_jax import results


def test_the_readme_table_regenerates_byte_identically_from_the_files():
  result = subprocess.run(
      [sys.executable, '-m', 'fer_jax.results', '--check'], cwd=REPO,
      env=run_env(), capture_output=True, text=True, timeout=120,
      check=False)
  assert result.returncode == 0, result.stderr


def test_a_changed_figure_changes_the_table_and_check_fails(tmp_path):
  folder = tmp_path / 'results'
  shutil.copytree(f'{REPO}/results', folder)
  readme = tmp_path / 'README.md'
  shutil.copy(f'{REPO}/README.md', readme)
  path = folder / 'shipped_fer2013_v1.json'
  record = json.loads(path.read_text())
  record['splits']['test']['accuracy'] = 0.1234
  path.write_text(json.dumps(record))
  assert '| 12.34 |' in results.table(str(folder))
  check = [sys.executable, '-m', 'fer_jax.results', f'--readme={readme}',
           f'--results={folder}']
  failed = subprocess.run(check + ['--check'], cwd=REPO, env=run_env(),
                          capture_output=True, text=True, timeout=120,
                          check=False)
  assert failed.returncode == 1
  assert 'not what' in failed.stderr
  subprocess.run(check, cwd=REPO, env=run_env(), check=True, timeout=120,
                 capture_output=True)
  assert '| 12.34 |' in readme.read_text()
  # Only the table changed.
  before, after = open(f'{REPO}/README.md').read(), readme.read_text()
  assert before.split(results.BEGIN)[0] == after.split(results.BEGIN)[0]
  assert before.split(results.END)[1] == after.split(results.END)[1]


def test_a_result_file_without_a_field_is_refused_with_its_name(tmp_path):
  (tmp_path / 'bad.json').write_text(json.dumps({'order': 1}))
  with pytest.raises(errors.UserError, match=r"bad.json: 'title' missing"):
    results.read_all(str(tmp_path))


def test_a_recorded_command_is_the_module_as_typed(monkeypatch):
  # With -m, sys.argv[0] is the module's file path, not what was typed.
  main = types.ModuleType('__main__')
  main.__spec__ = types.SimpleNamespace(name='fer_jax.pretrained')
  monkeypatch.setitem(sys.modules, '__main__', main)
  monkeypatch.setattr(sys, 'argv', ['/src/fer_jax/pretrained.py',
                                    '--evaluate', '--record=r.json'])
  assert results._command() == ('python -m fer_jax.pretrained --evaluate '
                                '--record=r.json')
  main.__spec__ = None  # python launch.py ...
  monkeypatch.setattr(sys, 'argv', ['launch.py', '--config=c.py'])
  assert results._command() == 'python launch.py --config=c.py'
