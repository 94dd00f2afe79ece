"""Pools the test predictions of k-fold runs into one accuracy.

  python -m fer_jax.pool_folds runs/uvgg_ckplus/fold*

Each workdir's `metrics.jsonl` holds the test confusion matrix of every
epoch. The pooled figure sums the last epochs' matrices: every test
prediction of every fold counted once, as the papers report 10-fold CK+. The
sum of each fold's best epoch, which the ancestor repository reports, is
printed beside it and labelled optimistic (it selects on the test set).
"""
import json
import os
import sys

import numpy as np

from fer_jax import metrics


def fold_confusions(workdir, split='test'):
  """[confusion matrix per evaluated epoch] from workdir/metrics.jsonl."""
  path = os.path.join(workdir, 'metrics.jsonl')
  if not os.path.isfile(path):
    raise FileNotFoundError(f'{path}: missing; expected a finished run')
  with open(path) as f:
    rows = [json.loads(line) for line in f]
  confusions = [np.array(r[f'{split}/confusion']) for r in rows
                if f'{split}/confusion' in r]
  if not confusions:
    raise ValueError(f'{path}: no {split}/confusion; was {split!r} one of '
                     'config.data.eval_splits?')
  return confusions


def pool(workdirs, split='test'):
  """(pooled last-epoch accuracy, pooled best-epoch accuracy, predictions)."""
  last = best = 0
  for workdir in workdirs:
    confusions = fold_confusions(workdir, split)
    last = last + confusions[-1]
    best = best + max(confusions, key=metrics.accuracy)
  return metrics.accuracy(last), metrics.accuracy(best), int(last.sum())


def main(argv):
  if len(argv) < 2:
    sys.exit('usage: python -m fer_jax.pool_folds WORKDIR [WORKDIR ...]')
  try:
    last, best, n = pool(argv[1:])
  except (FileNotFoundError, ValueError) as e:
    sys.exit(f'error: {e}')
  print(f'{len(argv) - 1} folds, {n} test predictions pooled: '
        f'{last:.2%} at each fold\'s last epoch; {best:.2%} at each fold\'s '
        'best test epoch (optimistic, as the ancestor repository reports)')


if __name__ == '__main__':
  main(sys.argv)
