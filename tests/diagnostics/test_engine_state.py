"""A restored engine continues exactly where the saved one stood: the dashboard restores it after a
restart instead of replaying the run's history through the detectors."""

from __future__ import annotations

import json
import math
import random

import pytest

from benchmarks.alerts.traces import TRACES, read_rows
from orpo_dash.diagnostics import AlertEngine
from orpo_dash.diagnostics.engine import STATE_VERSION

TRACE_FILES = sorted(TRACES.glob("*.jsonl.gz"))


def _points(rows: list[dict]) -> list[tuple[int, str, float]]:
    return [(int(row["step"]), name, float(value)) for row in rows for name, value in row.items() if name != "step"]


def _through_json(engine: AlertEngine) -> AlertEngine:
    # The dashboard stores the state as JSON text: Infinity and NaN must survive the trip.
    restored = AlertEngine.restored(json.loads(json.dumps(engine.state())))
    assert json.dumps(restored.state()) == json.dumps(engine.state())  # every field, NaN and inf included
    return restored


@pytest.mark.parametrize("path", TRACE_FILES, ids=[p.name.removesuffix(".jsonl.gz") for p in TRACE_FILES])
def test_restored_engine_gives_the_same_alerts_as_an_uninterrupted_one(path) -> None:  # type: ignore[no-untyped-def]
    points = _points(read_rows(path))
    whole = AlertEngine()
    expected = whole.feed(points) + whole.flush()

    rng = random.Random(path.name)
    # One cut early (while the baseline head still fills), a few anywhere.
    cuts = sorted({min(20, len(points) - 1), *rng.sample(range(1, len(points)), k=min(3, len(points) - 1))})
    engine, got, start = AlertEngine(), [], 0
    for cut in [*cuts, len(points)]:
        got += engine.feed(points[start:cut])
        engine, start = _through_json(engine), cut
    got += engine.flush()
    assert got == expected


def test_state_is_bounded_by_the_windows_not_the_run() -> None:
    engine = AlertEngine()
    engine.feed((step, name, 1.0 / (step + 1)) for step in range(20_000)
                for name in ("loss", "nll_loss", "log_odds_ratio", "logps_chosen", "eval/nll_loss"))
    short, long = len(json.dumps(engine.state())), None
    engine.feed((step, "loss", 0.5) for step in range(20_000, 200_000))
    long = len(json.dumps(engine.state()))
    assert long <= short * 1.1


def test_state_of_another_version_is_refused() -> None:
    state = AlertEngine().state()
    state["version"] = STATE_VERSION + 1
    with pytest.raises(ValueError, match="version"):
        AlertEngine.restored(state)


def test_restored_open_alert_closes_like_the_original() -> None:
    engine = AlertEngine()
    opened = engine.feed([(0, "loss", 1.0), (1, "loss", math.nan), (2, "loss", 1.0)])
    assert [change.kind for change in opened] == ["non_finite"]
    restored = _through_json(engine)
    assert restored.open_alerts() == engine.open_alerts()
    tail = [(step, "loss", 1.0) for step in range(3, 40)]
    assert restored.feed(tail) + restored.flush() == engine.feed(tail) + engine.flush()
