"""Two processes over loopback (jax.distributed, gloo CPU collectives)."""
import json
import os
import socket
import subprocess

from conftest import launch_args, run_env, tiny_config


def _free_port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def test_two_processes_train_checkpoint_and_count_each_image_once(
    data_dir, tmp_path):
  config = tiny_config(data_dir, epochs=1)
  workdir = str(tmp_path)
  distributed = [f'--coordinator_address=127.0.0.1:{_free_port()}',
                 '--num_processes=2']
  processes = [subprocess.Popen(
      launch_args(config, workdir) + distributed + [f'--process_id={i}'],
      env=run_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
      text=True) for i in range(2)]
  for process in processes:
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr[-3000:]

  data_state = os.listdir(os.path.join(workdir, 'checkpoints', '16', 'data'))
  assert {'process_0-of-2.json', 'process_1-of-2.json'} <= set(data_state)
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    lines = [json.loads(line) for line in f]
  assert sorted(l['step'] for l in lines if 'train/loss' in l) == list(
      range(1, 17))
  evals = [l for l in lines if 'validation/confusion' in l]
  assert len(evals) == 1
  for split in ('validation', 'test'):
    # Each process evaluates its half; padding is masked out.
    assert sum(map(sum, evals[0][f'{split}/confusion'])) == 128
