"""Keep freed memory in the process for the next training step instead of handing it back.

A training step frees and re-allocates the same large tensors every time (activations, the
[vocab, hidden] gradient of the embedding). glibc serves blocks above its mmap threshold (128 KiB
to 32 MiB) with fresh mappings and trims its heap's free top back to the OS, so every step pays
the kernel for zeroed pages again: about 66,000 page faults and 0.14 s of system time per step for
SmolLM2 at batch 4 on a CPU. With mmap off for malloc and no trimming the pages stay with the
process; the peak resident memory is the same (the peak of live memory), it is just not returned
between steps. A user's own MALLOC_* settings win (benchmarks/trainer_vs_reference.py --exact-memory
sets them to measure live memory exactly)."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

# mallopt parameters (glibc's malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
TRIM_ABOVE = 2**31 - 1  # bytes of free heap top kept before trimming: mallopt takes an int


def keep_freed_memory() -> bool:
    """Tell glibc's malloc to reuse freed memory; whether it took effect (False off glibc Linux,
    or when the environment already sets MALLOC_ options)."""
    if not sys.platform.startswith("linux") or any(key.startswith("MALLOC_") for key in os.environ):
        return False
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other C libraries have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_TRIM_THRESHOLD, TRIM_ABOVE) and mallopt(M_MMAP_MAX, 0))
