"""Transparent huge pages for XLA's host buffers, set before the process starts.

XLA:CPU mallocs each step's temporaries afresh: 95 MB at the demo config,
about 1 GB for VGG19 at batch 128. glibc serves allocations above 32 MB with
mmap and gives them back with munmap, so every step faults in fresh 4 KiB
pages, tens of thousands of page faults a step. With the glibc tunable
`glibc.malloc.hugetlb=1` (glibc >= 2.35) malloc advises the kernel to back
these maps with 2 MiB pages (MADV_HUGEPAGE, which the kernel's THP settings
`madvise` and `always` honour): a few hundred faults a step. `python -m
fer_jax.bench` with and without GLIBC_TUNABLES=glibc.malloc.hugetlb=0 shows
the difference in images/s; the small models gain most.

Tunables are read once, when the process starts, so the entry points
(`launch.py`, `python -m fer_jax.bench`) re-execute themselves, as they start,
with the variable set. It concerns host memory only; on GPU hosts it is
harmless. Other C libraries, and older glibc, ignore it.
"""
import os
import sys

TUNABLE = 'glibc.malloc.hugetlb=1'


def _environment(env):
  """`env` with TUNABLE added to GLIBC_TUNABLES; None if already there."""
  tunables = env.get('GLIBC_TUNABLES', '')
  if 'glibc.malloc.hugetlb=' in tunables:  # set already, or by the user
    return None
  return {**env, 'GLIBC_TUNABLES': ':'.join(filter(None, [tunables, TUNABLE]))}


def reexec():
  """Re-executes this process's command line with TUNABLE, at most once.

  Call it first thing under `if __name__ == '__main__'`: the work done
  before it is done again. Set GLIBC_TUNABLES=glibc.malloc.hugetlb=0 to opt
  out.
  """
  env = _environment(os.environ)
  if sys.platform == 'linux' and env is not None:
    os.execve(sys.executable, sys.orig_argv, env)
