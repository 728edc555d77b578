"""Zooming into a downsampled chart fetches that step range at full resolution, on the compare
view (every run in it) and on the run page."""

from __future__ import annotations

import math

import pytest

from tests.pages.conftest import register_run
from trainer.streaming import StreamingReporter

pytestmark = pytest.mark.browser

STEPS = 2500  # more than the 1,000 (compare) and 2,000 (run page) points a first draw asks for


def _stream_long_run(server, dataset, name: str, phase: float) -> int:  # type: ignore[no-untyped-def]
    run_id, token = register_run(server, dataset, name=name)
    reporter = StreamingReporter(server.url, run_id, token)
    reporter.status("running", total_steps=STEPS)
    for step in range(1, STEPS + 1):
        reporter.metrics(step, {"loss": 1.0 + 0.5 * math.sin(step / 7 + phase)})
    reporter.status("completed")
    reporter.close(timeout=30)
    return run_id


def _steps_drawn(page, key: str) -> list[int]:  # type: ignore[no-untyped-def]
    return page.evaluate(
        """(key) => document.querySelector('[data-metric-group=loss]').data
             .find(t => t.meta.key === key && t.meta.role === 'raw').x""",
        key,
    )


def _zoom(page, x0: int, x1: int) -> None:  # type: ignore[no-untyped-def]
    page.evaluate(
        "([a, b]) => Plotly.relayout(document.querySelector('[data-metric-group=loss]'), {'xaxis.range': [a, b]})",
        [x0, x1],
    )


def test_zoom_fetches_full_resolution_on_compare_and_run_page(live_server, page, tiny_dataset_file) -> None:  # type: ignore[no-untyped-def]
    ids = [_stream_long_run(live_server, tiny_dataset_file, f"long {i}", phase=i) for i in range(2)]

    page.goto(f"{live_server.url}/compare?runs={ids[0]},{ids[1]}")
    page.wait_for_function("() => Number(document.querySelector('[data-metric-group=loss]').dataset.pointCount) > 0")
    for run_id in ids:
        steps = _steps_drawn(page, f"{run_id}:loss")
        assert len(steps) <= 1100  # downsampled at first
        assert len([s for s in steps if 1000 <= s <= 1100]) < 101
    _zoom(page, 1000, 1100)
    page.wait_for_selector("[data-metric-group=loss][data-zoomed-range]")
    for run_id in ids:
        steps = _steps_drawn(page, f"{run_id}:loss")
        assert set(range(1000, 1101)) <= set(steps), f"run {run_id} is missing steps in the zoomed range"
        assert steps == sorted(steps) and len(steps) == len(set(steps))

    page.goto(f"{live_server.url}/runs/{ids[0]}")
    page.wait_for_function("() => Number(document.querySelector('[data-metric-group=loss]').dataset.pointCount) > 0")
    assert len([s for s in _steps_drawn(page, "loss") if 2000 <= s <= 2050]) < 51
    _zoom(page, 2000, 2050)
    page.wait_for_selector("[data-metric-group=loss][data-zoomed-range]")
    assert set(range(2000, 2051)) <= set(_steps_drawn(page, "loss"))
