"""The sys/ metrics: how hard the worker works the machine (CPU, resident memory, and its GPU's when on CUDA).

The training loop asks `due()` after every optimizer step (one clock read) and calls `sample()` only when
`every_seconds` have passed since the last sample, so a loop of fast steps pays for a sample every few
seconds, not every step. A step longer than the interval gives one sample per step. No thread: a
sample is reported at the step the loop has reached, through the same reporter as every other metric.

Readings (orpo_dash/metric_names.py, docs/metrics.md):
- CPU: os.times() (all threads of this process, children excluded) over wall time since the previous sample.
- RSS: /proc/self/statm on Linux; left out where there is no /proc (macOS, Windows).
- GPU memory: torch.cuda.memory_allocated / max_memory_allocated of the training device.
- GPU utilisation: torch.cuda.utilization, which needs pynvml (the nvidia-ml-py package). It is optional:
  without it, or if NVML fails once, sys/gpu_util is simply left out.

Imports torch only when the device is a CUDA device.
"""

from __future__ import annotations

import importlib.util
import os
import time
from collections.abc import Callable
from typing import Any

from orpo_dash import metric_names as M

MB = 2**20
STATM = "/proc/self/statm"


def cpu_seconds() -> float:
    """CPU time this process has used so far, user + system, over all its threads."""
    times = os.times()
    return times.user + times.system


def rss_bytes() -> int | None:
    """Resident memory of this process, or None where /proc is not available."""
    try:
        with open(STATM, "rb") as statm:
            resident_pages = int(statm.read().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


class SystemSampler:
    """`every_seconds` 0 turns sampling off. `device` is the training device (a torch.device or None);
    `clock` is injectable so tests can drive the interval."""

    def __init__(self, every_seconds: float, *, device: Any = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.every_seconds = every_seconds
        self._clock = clock
        self._cuda = device if getattr(device, "type", None) == "cuda" else None
        # Looked up once: torch.cuda.utilization raises without pynvml, and a failed import each sample costs.
        self._gpu_util = self._cuda is not None and importlib.util.find_spec("pynvml") is not None
        self._rss = os.path.exists(STATM)
        self._last_wall = clock()
        self._last_cpu = cpu_seconds()
        # The first step is sampled: the System chart shows something as soon as training does.
        self._next = self._last_wall

    def due(self) -> bool:
        """True when a sample is owed; the per-step cost of the feature."""
        return self.every_seconds > 0 and self._clock() >= self._next

    def sample(self) -> dict[str, float]:
        """One reading of every metric available here; restarts the interval."""
        now, cpu = self._clock(), cpu_seconds()
        values: dict[str, float] = {}
        elapsed = now - self._last_wall
        if elapsed > 0:
            values[M.SYS_CPU_PERCENT] = 100.0 * max(cpu - self._last_cpu, 0.0) / elapsed
        if self._rss and (rss := rss_bytes()) is not None:
            values[M.SYS_RSS_MB] = rss / MB
        if self._cuda is not None:
            values.update(self._gpu())
        self._last_wall, self._last_cpu, self._next = now, cpu, now + self.every_seconds
        return values

    def _gpu(self) -> dict[str, float]:
        import torch

        values = {
            M.SYS_GPU_MEM_MB: torch.cuda.memory_allocated(self._cuda) / MB,
            M.SYS_GPU_MAX_MEM_MB: torch.cuda.max_memory_allocated(self._cuda) / MB,
        }
        if self._gpu_util:
            try:
                values[M.SYS_GPU_UTIL] = float(torch.cuda.utilization(self._cuda))
            except Exception:  # NVML missing its driver library, or a device it cannot query: stop asking
                self._gpu_util = False
        return values
