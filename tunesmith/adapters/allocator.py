"""Make freed tensor memory go back to the system on Linux/glibc CPU training.

glibc serves allocations over its mmap threshold (128 KiB at start) with their own mapping
and returns it on free, but raises that threshold to the size of each such block freed, up
to 32 MiB. After the first training step, activations of a few MiB come from the heap
instead, where freed blocks stay in the process and fragment: on a 100M-parameter model at
batch 4 x 256 the peak RSS grew by 0.86 GiB over what the live tensors need
(benchmarks/results/adapters.md). Fixing the threshold keeps RSS at the live tensors. Same
effect as starting Python with MALLOC_MMAP_THRESHOLD_=262144 in the environment.
"""
from __future__ import annotations

import ctypes
import platform

MMAP_THRESHOLD = 256 * 1024
_M_MMAP_THRESHOLD = -3  # mallopt parameter number in glibc's malloc.h


def return_freed_memory() -> bool:
    """Fix glibc's mmap threshold for this process; False where there is no glibc (a no-op)."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD))
