"""How many runs this machine trains at once by default, and which GPU each local worker gets.

Read from the operating system, never from torch: the server must not import it (and start in a
second). GPUs are the NVIDIA driver's list under /proc, narrowed by CUDA_VISIBLE_DEVICES as CUDA
itself would narrow it.
"""

from __future__ import annotations

import os
from pathlib import Path

NVIDIA_GPUS = Path("/proc/driver/nvidia/gpus")
# A CPU worker's matrix multiplications use every core they are given; below about four cores a run
# is slower than waiting its turn would make it, so a CPU machine runs one run per four cores.
CORES_PER_CPU_RUN = 4


def visible_gpus(environ: dict[str, str] | None = None, driver_list: Path = NVIDIA_GPUS) -> list[str]:
    """The GPU ids a worker started from here may use ("0", "1", ... or the UUIDs CUDA_VISIBLE_DEVICES names)."""
    env = os.environ if environ is None else environ
    named = env.get("CUDA_VISIBLE_DEVICES")
    if named is not None:
        ids = [part.strip() for part in named.split(",") if part.strip()]
        # CUDA stops at the first invalid entry; "-1" is the usual way to hide every GPU.
        return ids[: next((i for i, part in enumerate(ids) if part.startswith("-")), len(ids))]
    try:
        return [str(i) for i in range(sum(1 for _ in driver_list.iterdir()))]
    except OSError:
        return []


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def default_max_concurrent_runs() -> int:
    """One run per visible GPU; without GPUs, one per CORES_PER_CPU_RUN cores (at least one)."""
    gpus = visible_gpus()
    return len(gpus) if gpus else max(1, usable_cores() // CORES_PER_CPU_RUN)


def threads_per_cpu_run(max_concurrent: int) -> int:
    """Intra-op threads for each of max_concurrent CPU workers, so together they do not oversubscribe the cores."""
    return max(1, usable_cores() // max(1, max_concurrent))
