"""Orbax checkpoints of a training run.

A checkpoint holds four items, so that each reader restores only what it
needs: `model` (params and batch statistics: all that evaluation and
fine-tuning read), `opt` (step and optimizer state), `data` (the grain
iterator's position) and `run` (the config and the per-epoch evaluation
history, as JSON). Orbax writes each step to a temporary folder and renames it
when complete, so a run killed mid-save leaves the previous checkpoints intact.
"""
import os

import grain
import jax
import orbax.checkpoint as ocp

SELECTION_METRIC = 'selection_accuracy'


def _selection(metrics):
  return metrics[SELECTION_METRIC]


def manager(workdir, keep, track_best):
  """Keeps the last `keep` checkpoints and, if `track_best`, the best one."""
  policies = [ocp.checkpoint_managers.LatestN(n=keep)]
  if track_best:
    policies.append(ocp.checkpoint_managers.BestN(
        get_metric_fn=_selection, n=1,
        keep_checkpoints_without_metrics=False))
  options = ocp.CheckpointManagerOptions(
      preservation_policy=ocp.checkpoint_managers.AnyPreservationPolicy(
          policies),
      best_fn=_selection if track_best else None, best_mode='max',
      create=True)
  return ocp.CheckpointManager(
      os.path.join(os.path.abspath(workdir), 'checkpoints'), options=options,
      item_names=('model', 'opt', 'data', 'run'))


def save(mngr, step, state, data_iterator, run, selection=None):
  """Saves asynchronously; `selection` is the model-selection accuracy."""
  mngr.save(step, args=ocp.args.Composite(
      model=ocp.args.StandardSave(
          {'params': state.params, 'batch_stats': state.batch_stats}),
      opt=ocp.args.StandardSave(
          {'step': state.step, 'opt_state': state.opt_state}),
      data=grain.checkpoint.CheckpointSave(data_iterator),
      run=ocp.args.JsonSave(run)),
      metrics=None if selection is None else {SELECTION_METRIC: selection})


def _abstract(tree):
  return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)


def restore_run(mngr, step):
  return mngr.restore(step, args=ocp.args.Composite(
      run=ocp.args.JsonRestore())).run


def restore_train(mngr, step, state, data_iterator):
  """The full training state and data position at `step`."""
  restored = mngr.restore(step, args=ocp.args.Composite(
      model=ocp.args.StandardRestore(_abstract(
          {'params': state.params, 'batch_stats': state.batch_stats})),
      opt=ocp.args.StandardRestore(_abstract(
          {'step': state.step, 'opt_state': state.opt_state})),
      data=grain.checkpoint.CheckpointRestore(data_iterator)))
  state = state.replace(**restored.model, **restored.opt)
  return state, restored.data


def restore_model(mngr, step, variables):
  """Params and batch stats only (no optimizer), shaped like `variables`."""
  return mngr.restore(step, args=ocp.args.Composite(
      model=ocp.args.StandardRestore(_abstract(variables)))).model
