"""Ingestion's fast paths give exactly what the general code gives (they exist only for speed)."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from orpo_dash.protocol import ProtocolError, parse_point, parse_points
from server.services.rollups import BUCKET_WIDTH, _extremes, _rows_by_name, _step_range_per_name, _summarise_points


def test_parse_points_matches_parse_point_and_refuses_the_same() -> None:
    raw = [[3, "loss", 0.5, 1.5], [4, "loss", None, 2.0], [5, "loss", 1, 3], [6, "acc", 2.5, 7],
           (7, "loss", 0.25, 4.0), [0, "x" * 200, -1e300, 0.0]]
    parsed = parse_points(raw)
    expected = [parse_point(point) for point in raw]
    assert len(parsed) == len(expected)
    for got, want in zip(parsed, expected, strict=True):
        assert got[:2] == want[:2] and got[3] == want[3] and type(got[3]) is float
        assert got[2] == want[2] or (math.isnan(got[2]) and math.isnan(want[2]))
    for bad in ([True, "loss", 0.5, 1.0], [-1, "loss", 0.5, 1.0], [1, "", 0.5, 1.0], [1, "x" * 201, 0.5, 1.0],
                [1, "loss", "0.5", 1.0], [1, "loss", False, 1.0], [1, "loss", 0.5, None], [1, "loss", 0.5], {"step": 1}):
        with pytest.raises(ProtocolError):
            parse_points([[1, "ok", 0.5, 1.0], bad])


def test_level0_summaries_match_the_general_extremes() -> None:
    rng = random.Random(0)
    rows, step = [], 5
    while step < 20 * BUCKET_WIDTH:
        value = None if rng.random() < 0.05 else float(rng.choice([rng.gauss(0, 1), 1.0, -1.0]))  # ties too
        rows.append((step, value, step + 0.5))
        step += rng.choice([1, 1, 2, 70])  # gaps, empty buckets
    fast = _summarise_points(rows)
    buckets: dict[int, list[tuple]] = {}
    for step, value, when in rows:
        child = (step, step, value, when, step, value, when, step if value is None else None, when)
        buckets.setdefault(step // BUCKET_WIDTH, []).append(child)
    general = []
    for bucket, members in buckets.items():
        low, high, nan = _extremes(members)
        general.append((bucket, *(low or (None, None, None)), *(high or (None, None, None)), *(nan[0::2] if nan else (None, None))))
    assert fast == general


def test_a_well_formed_batch_parses_column_by_column_to_what_parse_point_gives() -> None:
    raw = [[step, f"m{step % 3}", None if step == 4 else step * 0.5, 100.0 + step] for step in range(10)]
    raw.append([10, "m0", math.inf, 1.0])  # not from JSON: the long way, same result as before
    for batch in (raw[:10], raw):
        parsed = parse_points(batch)
        expected = [parse_point(point) for point in batch]
        assert [p[:2] + p[3:] for p in parsed] == [p[:2] + p[3:] for p in expected]
        assert [repr(p[2]) for p in parsed] == [repr(p[2]) for p in expected]  # NaN compares by its repr
    for bad in ([1, "ok", 0.5, 1.0, 9], [1, "a\x00", 0.5, 1.0], [2**31, "ok", 0.5, 1.0], [1, ["ok"], 0.5, 1.0]):
        with pytest.raises(ProtocolError):
            parse_points([[0, "ok", 0.5, 1.0], bad])


def test_step_ranges_per_metric_match_the_general_loop() -> None:
    rng = random.Random(1)
    for trial in range(300):
        points = [(rng.randrange(50), f"m{rng.randrange(4)}", 0.0, 0.0) for _ in range(rng.randrange(1, 40))]
        if trial % 2:
            points.sort(key=lambda point: point[0])  # the fast path: a batch in step order
        low: dict[str, int] = {}
        high: dict[str, int] = {}
        for step, name, _, _ in points:
            low[name], high[name] = min(low.get(name, step), step), max(high.get(name, step), step)
        in_order = all(a[0] <= b[0] for a, b in itertools.pairwise(points))
        assert _step_range_per_name([p[0] for p in points], [p[1] for p in points]) == (low, high, in_order)


def test_rows_per_metric_match_the_general_grouping() -> None:
    """The periodic fast path (every step logs the same metrics in the same order) and the general
    grouping give the same rows; near-periodic batches (a metric missing once, a new one, a repeat, a
    batch cut mid-step, NaN/inf) must not be taken for periodic."""
    rng = random.Random(2)
    names = ["loss", "nll", "acc", "lr"]
    for trial in range(400):
        k = rng.randrange(1, 5)
        points = [(step, name, rng.gauss(0, 1), float(step)) for step in range(rng.randrange(1, 30)) for name in names[:k]]
        points = points[: rng.randrange(1, len(points) + 1)]  # cut mid-step, as a 5,000-point batch is
        if trial % 4 == 1 and len(points) > 2:
            del points[rng.randrange(len(points))]
        elif trial % 4 == 2:
            points.insert(rng.randrange(len(points) + 1), (99, rng.choice([*names, "new"]), 1.0, 2.0))
        elif trial % 4 == 3:
            points[rng.randrange(len(points))] = (7, points[0][1], rng.choice([math.nan, math.inf, 0.5]), 3.0)
        expected: dict[str, list] = {}
        for step, name, value, when in points:
            expected.setdefault(name, []).append((step, value if math.isfinite(value) else None, when))
        got = _rows_by_name(points, [p[1] for p in points])
        assert list(got) == list(expected)
        assert repr(got) == repr(expected)  # NaN-free by construction; repr also compares the None rows
