"""Mistakes a user made, as opposed to bugs.

A `UserError` is raised for what the user gave: a config value, missing or
bad data, a workdir that holds another run or is busy, a damaged checkpoint,
a bad weight file, a run that diverged. Its message is one line naming the
key, file or value, what was expected and what to do. The command-line entry
points print it alone and exit 1 (`report`); any other exception is a bug
and keeps its traceback.
"""
import sys


class UserError(ValueError):
  """A mistake in what the user gave; the message says which and what to do."""


class MissingError(UserError, FileNotFoundError):
  """Something the user should have made first (prepared data, a run)."""


class DivergedError(UserError, FloatingPointError):
  """Training produced non-finite values (too high a learning rate, say)."""


def report(fn, *args, verbose=False):
  """Calls fn(*args); a UserError exits with its one line on stderr.

  With `verbose` it propagates instead, traceback and all.
  """
  try:
    return fn(*args)
  except UserError as e:
    if verbose:
      raise
    # Printed now, not left to sys.exit: a failed checkpoint write leaves
    # orbax's threads printing while the interpreter shuts down.
    print(f'error: {e}', file=sys.stderr, flush=True)
    sys.exit(1)
