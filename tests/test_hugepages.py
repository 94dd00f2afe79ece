"""The entry points' re-execution with glibc's huge-page malloc tunable."""
import os
import subprocess
import sys

import pytest

_PRINT_AFTER_REEXEC = ('from fer_jax import hugepages; print("started"); '
                       'hugepages.reexec(); '
                       'import os; print(os.environ["GLIBC_TUNABLES"])')


@pytest.mark.skipif(sys.platform != 'linux', reason='glibc tunables: Linux')
@pytest.mark.parametrize('before, after', [
    (None, 'glibc.malloc.hugetlb=1'),
    ('glibc.malloc.arena_max=4', 'glibc.malloc.arena_max=4:'
     'glibc.malloc.hugetlb=1'),
    ('glibc.malloc.hugetlb=0', 'glibc.malloc.hugetlb=0'),  # the user's opt-out
])
def test_reexec_runs_the_command_again_once_with_the_tunable(before, after):
  env = {k: v for k, v in os.environ.items() if k != 'GLIBC_TUNABLES'}
  if before is not None:
    env['GLIBC_TUNABLES'] = before
  out = subprocess.run([sys.executable, '-c', _PRINT_AFTER_REEXEC], env=env,
                       capture_output=True, text=True, check=True,
                       cwd=os.path.dirname(os.path.dirname(__file__))).stdout
  starts = 1 if before == after else 2
  assert out.splitlines() == ['started'] * starts + [after]
