"""Charts fed through the real worker protocol (no training process): smoothing, the compare view
with three runs and its config diff, and the friendly 404."""

from __future__ import annotations

import itertools
import math
import random

import httpx
import pytest

from tests.conftest import _serve
from tests.pages.conftest import point_count, register_run
from trainer.streaming import StreamingReporter

pytestmark = pytest.mark.browser

STEPS = 60


def _noisy_loss(step: int, seed: int) -> float:
    return 2.0 * math.exp(-step / 25) + 0.5 + random.Random(seed * 1000 + step).uniform(-0.3, 0.3)


def _stream(server, run_id: int, token: str, steps: range, *, seed: int, finish: bool) -> StreamingReporter:  # type: ignore[no-untyped-def]
    reporter = StreamingReporter(server.url, run_id, token)
    reporter.status("running", total_steps=STEPS * 2)
    for step in steps:
        loss = _noisy_loss(step, seed)
        reporter.metrics(step, {"loss": loss, "nll_loss": loss - 0.1, "or_loss": 0.1, "accuracy": 0.5 + step / 200,
                                "log_odds_ratio": step / 30, "epoch": step / STEPS})
    if finish:
        reporter.status("completed")
        reporter.close(timeout=30)
    return reporter


def _loss_traces(page) -> dict[str, dict]:  # type: ignore[no-untyped-def]
    """The drawn loss traces by role: {"raw": {...}, "smooth": {...}} for the train loss line."""
    return page.evaluate(
        """() => Object.fromEntries(document.querySelector('[data-metric-group=loss]').data
             .filter(t => t.meta.key === 'loss')
             .map(t => [t.meta.role, {y: Array.from(t.y), visible: t.visible, opacity: t.opacity}]))"""
    )


def test_smoothing_slider_changes_the_drawn_curve(live_server, page, shot, tiny_dataset_file) -> None:  # type: ignore[no-untyped-def]
    run_id, token = register_run(live_server, tiny_dataset_file, name="smoothing")
    _stream(live_server, run_id, token, range(1, STEPS + 1), seed=1, finish=True)

    page.goto(f"{live_server.url}/runs/{run_id}")
    page.wait_for_function(f"() => Number(document.querySelector('[data-metric-group=loss]').dataset.pointCount) === {3 * STEPS}")

    def set_smoothing(value: float) -> None:
        page.eval_on_selector(
            "#smoothing", "(el, v) => { el.value = v; el.dispatchEvent(new Event('input', {bubbles: true})); }", value
        )
        page.wait_for_function(
            f"() => document.querySelector('[data-metric-group=loss]').data.some(t => t.meta.key === 'loss' && "
            f"t.meta.role === 'smooth' && t.visible === {str(value > 0).lower()})"
        )

    set_smoothing(0)
    off = _loss_traces(page)
    assert off["raw"]["opacity"] == 1 and off["smooth"]["visible"] is False
    raw = off["raw"]["y"]
    assert raw == pytest.approx([_noisy_loss(s, 1) for s in range(1, STEPS + 1)])

    set_smoothing(0.9)
    on = _loss_traces(page)
    smooth = on["smooth"]["y"]
    assert on["raw"]["opacity"] < 1 and on["raw"]["y"] == pytest.approx(raw)  # raw stays, faded
    assert len(smooth) == len(raw) and smooth[0] == pytest.approx(raw[0])  # debiased EMA starts at the data
    roughness = lambda ys: sum(abs(b - a) for a, b in itertools.pairwise(ys))  # noqa: E731
    assert roughness(smooth) < 0.5 * roughness(raw)
    # EMA with weight 0.9, debiased: check one value by hand.
    last, norm = 0.0, 0.0
    for value in raw[:10]:
        last, norm = 0.9 * last + 0.1 * value, 0.9 * norm + 0.1
    assert smooth[9] == pytest.approx(last / norm)
    shot("run-smoothed")


def test_compare_three_runs_overlays_diff_and_follows_live_run(live_server, page, shot, tiny_dataset_file) -> None:  # type: ignore[no-untyped-def]
    configs = [{"beta": 0.1, "learning_rate": 8e-6}, {"beta": 0.5, "learning_rate": 8e-6}, {"beta": 1.0, "learning_rate": 2e-5}]
    runs = [register_run(live_server, tiny_dataset_file, name=f"lambda {c['beta']}", **c) for c in configs]
    for seed, (run_id, token) in enumerate(runs[:2]):
        _stream(live_server, run_id, token, range(1, STEPS + 1), seed=seed, finish=True)
    live = _stream(live_server, *runs[2], range(1, STEPS // 2 + 1), seed=2, finish=False)
    try:
        ids = ",".join(str(run_id) for run_id, _ in runs)
        page.goto(f"{live_server.url}/compare?runs={ids}")
        page.wait_for_function(
            f"() => Number(document.querySelector('[data-metric-group=loss]').dataset.pointCount) >= {2 * STEPS + STEPS // 2}"
        )
        colours = page.evaluate(
            """() => [...new Set(document.querySelector('[data-metric-group=loss]').data
                 .filter(t => t.meta.role === 'raw').map(t => t.line.color))]"""
        )
        assert len(colours) == 3  # one colour per run

        # Config diff: only differences by default; beta and learning_rate differ, dtype does not.
        diff_fields = page.eval_on_selector_all("#diff-table tr.diff-row", "rows => rows.map(r => r.dataset.field)")
        assert set(diff_fields) == {"beta", "learning_rate"}
        page.uncheck("#only-diff")
        assert page.locator('#diff-table tr[data-field="dtype"].same').count() == 1
        page.check("#only-diff")
        assert page.locator('#diff-table tr[data-field="dtype"]').count() == 0
        assert page.locator("#summary-table tr[data-metric=loss] td").count() == 3

        # The run still training keeps streaming into the open page.
        before = point_count(page, "loss")
        for step in range(STEPS // 2 + 1, STEPS + 1):
            live.metrics(step, {"loss": _noisy_loss(step, 2)})
        page.wait_for_function(
            f"() => Number(document.querySelector('[data-metric-group=loss]').dataset.pointCount) >= {before + STEPS // 2}"
        )
        shot("compare")
    finally:
        live.status("completed")
        live.close(timeout=30)


def test_unknown_run_gets_a_friendly_404(live_server, page) -> None:  # type: ignore[no-untyped-def]
    response = page.goto(f"{live_server.url}/runs/987654")
    assert response.status == 404
    assert "no run with id 987654" in page.inner_text("main").lower()
    assert page.locator("a", has_text="Back to all runs").count() == 1
    assert httpx.get(f"{live_server.url}/runs/not-a-number").status_code == 404


def test_progress_says_what_a_run_is_waiting_for(live_server, page, tiny_dataset_file) -> None:  # type: ignore[no-untyped-def]
    run_id, token = register_run(live_server, tiny_dataset_file, name="starting")
    page.goto(f"{live_server.url}/runs/{run_id}")
    # Running, no step yet: the model is loading. Then the first step turns it into a step count.
    page.wait_for_function("() => document.getElementById('progress-text').textContent.startsWith('starting:')")
    reporter = _stream(live_server, run_id, token, range(1, 3), seed=9, finish=False)
    page.wait_for_function("() => document.getElementById('progress-text').textContent.startsWith('step 2 / ')")
    reporter.status("completed")
    reporter.close(timeout=30)


def test_a_lost_runs_returning_worker_is_drawn_and_the_run_stays_lost(tmp_path, page, tiny_dataset_file) -> None:  # type: ignore[no-untyped-def]
    for server in _serve(tmp_path, None, {"ORPO_DASH_WORKER_TIMEOUT": "3"}):
        run_id, token = register_run(server, tiny_dataset_file, name="comes back")
        first = _stream(server, run_id, token, range(1, 3), seed=3, finish=False)
        first.close(timeout=30)  # the worker falls silent without reporting an end
        page.goto(f"{server.url}/runs/{run_id}")
        page.wait_for_function("() => document.querySelector('#run-status [data-status]').dataset.status === 'lost'")
        # A worker that comes back after the dashboard gave up on it: its steps are kept and drawn on
        # the open page without a reload, but the run does not reopen (a resume is a new run).
        again = _stream(server, run_id, token, range(3, 6), seed=4, finish=False)
        page.wait_for_function("() => document.getElementById('progress-text').textContent.startsWith('step 5')")
        assert page.get_attribute("#run-status [data-status]", "data-status") == "lost"
        assert page.is_hidden("#stop-btn")
        again.status("stopped")
        again.close(timeout=30)
        assert server.api("GET", f"/api/runs/{run_id}").json()["status"] == "lost"
