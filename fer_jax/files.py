"""Writing a file whole or not at all: to a temporary name, then renamed.

A reader (or a run killed mid-write) never sees half a file: `os.replace`
is atomic on POSIX filesystems, and the old file stays until it runs.
A write that fails (a full disk) removes its temporary file and raises a
UserError naming the path.
"""
import os

from fer_jax import errors


def write(path, content):
  """Writes `content` (str, bytes, or an iterable of str lines) to `path`,
  creating its folder; returns `path`."""
  temporary = path + '.tmp'
  try:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(temporary, 'wb' if isinstance(content, bytes) else 'w') as f:
      if isinstance(content, (str, bytes)):
        f.write(content)
      else:
        f.writelines(content)
    os.replace(temporary, path)
  except OSError as e:
    if os.path.exists(temporary):
      os.remove(temporary)
    raise errors.UserError(f'could not write {path}: {e.strerror or e}; '
                           'it is as it was before') from e
  return path
