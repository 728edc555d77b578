"""stats.trend against values computed by hand, against a brute-force implementation written here,
and (where scipy is installed) against scipy.stats.

Mann-Kendall as implemented: S = sum over pairs i < j of sign(x_j - x_i); Var(S) = (n(n-1)(2n+5)
- sum over tied groups of t(t-1)(2t+5)) / 18; z = (S - sign(S)) / sqrt(Var(S)) (continuity
correction), 0 when S = 0. Theil-Sen slope = median of (x_j - x_i) / (t_j - t_i) over pairs with
t_j != t_i; change = slope x (t_last - t_first).
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from statistics import NormalDist

import numpy as np
import pytest

from orpo_dash.diagnostics.stats import median, trend


def _trend(values: list[float], steps: list[float] | None = None):
    steps = list(range(len(values))) if steps is None else steps
    return trend(np.array(steps, dtype=float), np.array(values, dtype=float))


def test_five_points_by_hand():
    # values 1 3 2 5 4 at steps 0..4. Pairwise slopes (i<j):
    #   (0,1) 2   (0,2) 1/2  (0,3) 4/3  (0,4) 3/4  (1,2) -1
    #   (1,3) 1   (1,4) 1/3  (2,3) 3    (2,4) 1    (3,4) -1
    # sorted: -1 -1 1/3 1/2 3/4 | 1 1 4/3 2 3 -> median (3/4 + 1) / 2 = 0.875
    # S = 8 positive - 2 negative = 6; no ties: Var = 5*4*15/18 = 50/3; z = (6-1)/sqrt(50/3) = sqrt(1.5)
    t = _trend([1, 3, 2, 5, 4])
    assert t.n == 5
    assert t.slope == pytest.approx(0.875, abs=1e-12)
    assert t.change == pytest.approx(3.5, abs=1e-12)
    assert t.z == pytest.approx(math.sqrt(1.5), abs=1e-12)
    assert t.median == 3.0


def test_reversed_series_negates_slope_and_z():
    # The same values read backwards: every pairwise slope and sign flips, S = -6, z = (-6+1)/sqrt(50/3).
    t = _trend([4, 5, 2, 3, 1])
    assert t.slope == pytest.approx(-0.875, abs=1e-12)
    assert t.z == pytest.approx(-math.sqrt(1.5), abs=1e-12)


def test_ties_by_hand():
    # values 1 2 2 3 2: pairs (0,1..4) + + + +, (1,2) 0, (1,3) +, (1,4) 0, (2,3) +, (2,4) 0, (3,4) -
    # S = 6 - 1 = 5. The value 2 is tied 3 times: Var = (5*4*15 - 3*2*11) / 18 = (300 - 66) / 18 = 13,
    # z = (5-1)/sqrt(13). Slopes: 1 1/2 2/3 1/4 0 1/2 0 1 0 -1 -> sorted -1 0 0 0 1/4 | 1/2 1/2 2/3 1 1,
    # median (1/4 + 1/2) / 2 = 0.375.
    t = _trend([1, 2, 2, 3, 2])
    assert t.z == pytest.approx(4 / math.sqrt(13), abs=1e-12)
    assert t.slope == pytest.approx(0.375, abs=1e-12)
    assert t.median == 2.0


def test_uneven_and_repeated_steps_by_hand():
    # steps 0 2 2 6, values 0 1 4 6: the pair at the repeated step 2 has no slope and is left out
    # (counted as +inf it would make the median 1.125); slopes (0,1) 1/2, (0,2) 2, (0,3) 1, (1,3) 5/4,
    # (2,3) 1/2 -> sorted 1/2 1/2 1 5/4 2, median 1; change = 1 x (6 - 0).
    t = _trend([0, 1, 4, 6], steps=[0, 2, 2, 6])
    assert t.slope == pytest.approx(1.0, abs=1e-12)
    assert t.change == pytest.approx(6.0, abs=1e-12)


def test_no_trend_gives_zero():
    flat = _trend([2.0] * 6)  # every pair tied: S = 0 and Var = 0
    assert (flat.z, flat.slope, flat.change) == (0.0, 0.0, 0.0)
    assert _trend([1, 3, 2]).z == 0.0  # S = 1: the continuity correction takes it to 0
    assert _trend([2, 1, 2]).z == 0.0  # S = 0


def test_one_sided_p_values_are_normal_tails():
    t = _trend([1, 3, 2, 5, 4])
    assert t.p_up == pytest.approx(1 - NormalDist().cdf(math.sqrt(1.5)), abs=1e-12)
    assert t.p_down == pytest.approx(NormalDist().cdf(math.sqrt(1.5)), abs=1e-12)


def test_median_matches_numpy_for_odd_and_even_lengths():
    rng = np.random.default_rng(3)
    for n in (1, 2, 5, 8, 41):
        x = rng.normal(size=n)
        assert median(x) == float(np.median(x))


def _brute_force(steps: list[float], values: list[float]) -> tuple[float, float, float]:
    """Theil-Sen slope, Mann-Kendall z and median, straight from the definitions, pair by pair."""
    n = len(values)
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    slopes = [(values[j] - values[i]) / (steps[j] - steps[i]) for i, j in pairs if steps[j] != steps[i]]
    s = sum((values[j] > values[i]) - (values[j] < values[i]) for i, j in pairs)
    var = (n * (n - 1) * (2 * n + 5) - sum(t * (t - 1) * (2 * t + 5) for t in Counter(values).values())) / 18
    z = (s - math.copysign(1, s)) / math.sqrt(var) if s and var > 0 else 0.0
    return statistics.median(slopes) if slopes else 0.0, z, statistics.median(values)


def _random_series(seed: int) -> tuple[list[float], list[float]]:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 61))
    steps = np.cumsum(rng.integers(1, 4, size=n)).astype(float)
    values = 0.01 * rng.normal() * steps + rng.normal(size=n)
    if seed % 2:
        values = np.round(values, 1)  # coarse values: ties, like accuracy-like metrics
    return steps.tolist(), values.tolist()


@pytest.mark.parametrize("seed", range(40))
def test_matches_brute_force(seed):
    steps, values = _random_series(seed)
    slope, z, mid = _brute_force(steps, values)
    t = _trend(values, steps)
    assert t.slope == pytest.approx(slope, rel=1e-9, abs=1e-12)
    assert t.change == pytest.approx(slope * (steps[-1] - steps[0]), rel=1e-9, abs=1e-12)
    assert t.z == pytest.approx(z, rel=1e-9, abs=1e-12)
    assert t.median == pytest.approx(mid, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("seed", range(0, 40, 3))
def test_matches_scipy(seed):
    stats = pytest.importorskip("scipy.stats")
    steps, values = _random_series(seed)
    t = _trend(values, steps)
    assert t.slope == pytest.approx(stats.theilslopes(values, steps)[0], rel=1e-9, abs=1e-12)
    # Kendall's tau_b of values against (distinct) steps is S / sqrt(n0 (n0 - n_ties)); its asymptotic
    # two-sided p-value is that of |S| / sqrt(Var(S)) with the same tie correction, without ours of 1.
    res = stats.kendalltau(steps, values, method="asymptotic")
    n0 = len(values) * (len(values) - 1) / 2
    n_ties = sum(c * (c - 1) / 2 for c in Counter(values).values())
    s = round(res.statistic * math.sqrt(n0 * (n0 - n_ties)))
    if s == 0:
        assert t.z == 0.0
        return
    z_uncorrected = math.copysign(-NormalDist().inv_cdf(res.pvalue / 2), s)
    assert t.z == pytest.approx(z_uncorrected * (abs(s) - 1) / abs(s), rel=1e-6, abs=1e-9)
