"""Writing a file whole or not at all: to a temporary name, then renamed.

A reader (or a run killed mid-write) never sees half a file: `os.replace`
is atomic on POSIX filesystems, and the old file stays until it runs.
"""
import os


def write(path, content):
  """Writes `content` (str, bytes, or an iterable of str lines) to `path`,
  creating its folder; returns `path`."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path + '.tmp', 'wb' if isinstance(content, bytes) else 'w') as f:
    if isinstance(content, (str, bytes)):
      f.write(content)
    else:
      f.writelines(content)
  os.replace(path + '.tmp', path)
  return path
