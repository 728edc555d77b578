"""Robust trend statistics over short, noisy metric windows (numpy only).

Theil-Sen gives the slope (median of pairwise slopes: a few outlier batches cannot move it);
Mann-Kendall gives a rank test that a monotonic trend is there at all. Both cost O(n^2) in the
window length n, which is bounded, so the cost per evaluation does not grow with the run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np


@dataclass(frozen=True)
class Trend:
    n: int
    slope: float  # Theil-Sen slope, units of value per step
    z: float  # Mann-Kendall z score (positive: increasing)
    change: float  # slope * (last step - first step): the trend's size over the window
    median: float  # median value in the window

    @property
    def p_up(self) -> float:
        """One-sided p-value for 'increasing'."""
        return 0.5 * math.erfc(self.z / math.sqrt(2.0))

    @property
    def p_down(self) -> float:
        return 0.5 * math.erfc(-self.z / math.sqrt(2.0))


def trend(steps: np.ndarray, values: np.ndarray) -> Trend:
    """Theil-Sen slope and Mann-Kendall z of `values` against `steps` (both 1-D, same length >= 3)."""
    n = len(values)
    i, j = _pairs(n)
    dv = values[j] - values[i]
    ds = steps[j] - steps[i]
    ok = ds != 0
    slope = float(np.median(dv[ok] / ds[ok])) if ok.any() else 0.0
    s = float(np.sign(dv).sum())
    # Variance of S with a tie correction (flat stretches are common in accuracy-like metrics).
    _, counts = np.unique(values, return_counts=True)
    ties = counts[counts > 1]
    var = (n * (n - 1) * (2 * n + 5) - float((ties * (ties - 1) * (2 * ties + 5)).sum())) / 18.0
    if var <= 0:
        z = 0.0
    else:
        z = (s - math.copysign(1.0, s)) / math.sqrt(var) if s != 0 else 0.0
    span = float(steps[-1] - steps[0])
    return Trend(n=n, slope=slope, z=z, change=slope * span, median=float(np.median(values)))


@lru_cache(maxsize=16)
def _pairs(n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.triu_indices(n, k=1)
