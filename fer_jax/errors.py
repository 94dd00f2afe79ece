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


def parse_flags(argv, program):
  """absl's flag parsing for an entry point (`app.run(main, flags_parser=
  functools.partial(parse_flags, program=...))`), with a one-line error for
  a bad flag or --config.* override."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    raise SystemExit(f'{program}: {e}') from e
  except AttributeError as e:  # ml_collections: the key does not exist
    raise SystemExit(f'{program}: the config has no key {e}; check the '
                     '--config.* overrides') from e
  except (KeyError, TypeError, ValueError) as e:  # e.g. a value of wrong type
    raise SystemExit(f'{program}: bad --config.* override: {e}') from e
