"""Pools the test predictions of k-fold runs into one accuracy.

  python -m fer_jax.pool_folds runs/uvgg_ckplus/fold* [--partial]

Each workdir's run record (its latest checkpoint's, verified as it is read)
holds the test confusion matrix of every epoch. The pooled figure sums the
last epochs' matrices: every test prediction of every fold counted once, as
the papers report 10-fold CK+. The sum of each fold's best epoch, which the
ancestor repository reports, is printed beside it and labelled optimistic
(it selects on the test set).

A headline number from the wrong runs is worse than none, so the runs are
checked first (`check`; tests/test_datasets.py): each finished its
configured epochs, each is another fold (`config.data.fold`), all 10 folds
are there (`--partial` pools fewer, and says which are missing), and their
configs agree except for the fold and where the data and logs live.
"""
import sys

import numpy as np

from fer_jax import checkpoint
from fer_jax import errors
from fer_jax import metrics
from fer_jax import weights
from fer_jax import workdir as workdir_lib
from fer_jax.data import ckplus


def read_run(workdir):
  """The run record of the latest readable checkpoint in `workdir`."""
  mngr = checkpoint.manager(workdir, keep=1, track_best=False, read_only=True)
  return weights.find_checkpoint(mngr, workdir, 'latest', log=print)[1]


def check(runs, split='test', partial=False):
  """Raises a UserError unless `runs` ([(workdir, run record)]) are
  finished runs of distinct folds with matching configs, all of them unless
  `partial`; returns the missing folds."""
  first_workdir, first = runs[0]
  by_fold = {}
  for workdir, run in runs:
    config, history = run['config'], run['history']
    if len(history) < config['epochs']:
      raise errors.UserError(
          f'{workdir}: trained {len(history)} of {config["epochs"]} epochs; '
          'finish it (launch.py resumes it) before pooling')
    if split not in history[-1]['eval']:
      raise errors.UserError(
          f"{workdir}: no {split} evaluation; was {split!r} one of "
          'config.data.eval_splits?')
    fold = config['data']['fold']
    if fold in by_fold:
      raise errors.UserError(f'{by_fold[fold]} and {workdir} are both fold '
                             f'{fold}; give each fold once')
    by_fold[fold] = workdir
    differ = workdir_lib.differences(first['config'], config,
                                     workdir_lib.MAY_DIFFER + ('data.fold',))
    if differ:
      key, (old, new) = next(iter(differ.items()))
      raise errors.UserError(
          f'{workdir}: config.{key}={new!r}, but {first_workdir} has '
          f'{old!r}; the folds of one result share their config')
  missing = sorted(set(range(1, ckplus.FOLDS + 1)) - set(by_fold))
  if missing and not partial:
    raise errors.UserError(
        f'folds {", ".join(map(str, missing))} are missing; give all '
        f'{ckplus.FOLDS} (or --partial to pool these)')
  return missing


def pool(workdirs, split='test', partial=False):
  """(pooled last-epoch accuracy, pooled best-epoch accuracy, predictions,
  missing folds) of the fold runs in `workdirs`, checked by `check`."""
  runs = [(workdir, read_run(workdir)) for workdir in workdirs]
  missing = check(runs, split, partial)
  last = best = 0
  for _, run in runs:
    confusions = [np.asarray(h['eval'][split]['confusion'])
                  for h in run['history']]
    last = last + confusions[-1]
    best = best + max(confusions, key=metrics.accuracy)
  return (metrics.accuracy(last), metrics.accuracy(best), int(last.sum()),
          missing)


def main(argv):
  partial = '--partial' in argv
  workdirs = [a for a in argv[1:] if a != '--partial']
  if not workdirs:
    sys.exit('usage: python -m fer_jax.pool_folds WORKDIR [WORKDIR ...] '
             '[--partial]')
  last, best, n, missing = errors.report(pool, workdirs, 'test', partial)
  print(f'{len(workdirs)} folds, {n} test predictions pooled: '
        f'{last:.2%} at each fold\'s last epoch; {best:.2%} at each fold\'s '
        'best test epoch (optimistic, as the ancestor repository reports)'
        + (f"; folds {', '.join(map(str, missing))} missing" if missing
           else ''))


if __name__ == '__main__':
  main(sys.argv)
