"""sys/ metrics (machine load) are not evidence about the training: no detector opens, closes or delays an
alert because of them, whatever their values and whatever steps they arrive at."""

from __future__ import annotations

import math
import random

import pytest

from benchmarks.alerts.traces import TRACES, read_rows
from orpo_dash import metric_names as M
from orpo_dash.diagnostics import AlertEngine

TRACE_FILES = sorted(TRACES.glob("*.jsonl.gz"))
LOGGING_EVERY = 3  # the traces' steps are spread out, so samples can land on steps with no train metrics
WILD = (math.nan, math.inf, -math.inf, 0.0, -5.0, 1e12)


def _train_points(rows: list[dict]) -> list[tuple[int, str, float]]:
    return [(LOGGING_EVERY * int(row["step"]), name, float(value))
            for row in rows for name, value in row.items() if name != "step"]


def _with_sys_samples(points: list[tuple[int, str, float]], rng: random.Random) -> list[tuple[int, str, float]]:
    """The stream a worker sends: after some steps' train metrics, a sys/ sample at that step or a later step
    not logged yet (at most every few seconds, at whatever step the loop reached), with values of every kind."""
    out: list[tuple[int, str, float]] = []
    for i, point in enumerate(points):
        out.append(point)
        ends_step = i + 1 == len(points) or points[i + 1][0] != point[0]
        if ends_step and rng.random() < 0.5:
            step = point[0] + rng.randrange(LOGGING_EVERY)
            out += [(step, name, rng.choice(WILD) if rng.random() < 0.3 else rng.uniform(0, 800)) for name in M.SYSTEM_METRICS]
    return out


def _alerts(points: list[tuple[int, str, float]], batch: int) -> list:  # type: ignore[type-arg]
    engine = AlertEngine()
    changes = []
    for start in range(0, len(points), batch):
        changes += engine.feed(points[start:start + batch])
    return changes + engine.flush()


@pytest.mark.parametrize("path", TRACE_FILES, ids=[p.name.removesuffix(".jsonl.gz") for p in TRACE_FILES])
def test_sys_samples_change_no_alert_of_a_real_or_synthetic_trace(path) -> None:  # type: ignore[no-untyped-def]
    train = _train_points(read_rows(path))
    rng = random.Random(path.name)
    mixed = _with_sys_samples(train, rng)
    assert len(mixed) > len(train)
    assert _alerts(mixed, batch=rng.randrange(1, 500)) == _alerts(train, batch=len(train) or 1)


def test_the_traces_do_open_alerts_so_the_comparison_above_means_something() -> None:
    opened = {path.name for path in TRACE_FILES if _alerts(_train_points(read_rows(path)), batch=10_000)}
    assert len(opened) >= 10


def test_sys_metrics_alone_never_open_an_alert_even_when_nan_or_inf() -> None:
    engine = AlertEngine()
    points = [(step, name, WILD[(step + i) % len(WILD)]) for step in range(1, 400) for i, name in enumerate(M.SYSTEM_METRICS)]
    assert engine.feed(points) + engine.flush() == []
    assert engine.open_alerts() == []
