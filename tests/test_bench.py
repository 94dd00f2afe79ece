"""The bench's entry point runs (its timings are not asserted)."""
import subprocess
import sys

from conftest import REPO, run_env


def test_bench_summary_prints_every_model():
  result = subprocess.run(
      [sys.executable, '-m', 'fer_jax.bench', '--summary'], cwd=REPO,
      env=run_env(GLIBC_TUNABLES='glibc.malloc.hugetlb=0'),
      capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  rows = {line.split()[0]: line for line in result.stdout.splitlines()}
  assert set(rows) == {'vgg19', 'uvgg19', 'efficientnet_b0', 'resnet50'}
  assert '20,743,255 params' in rows['uvgg19']
  assert '44x44x1' in rows['uvgg19'] and '224x224x3' in rows['resnet50']
  # With ImageNet's head, the papers' counts (torchvision's exact ones).
  assert '(5,288,548 with 1000 classes); paper: 5.3M' in rows[
      'efficientnet_b0']
  assert '(25,557,032 with 1000 classes); paper: 25.6M' in rows['resnet50']
