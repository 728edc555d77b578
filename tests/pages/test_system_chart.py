"""Machine load on the pages: the run page's System chart and the compare page's sys/ charts, fed through the
real worker protocol; a NaN among them opens no alert."""

from __future__ import annotations

import math

import pytest

from orpo_dash import metric_names as M
from tests.pages.conftest import point_count, register_run
from trainer.streaming import StreamingReporter

pytestmark = pytest.mark.browser

STEPS = 60
SAMPLE_EVERY = 4  # steps between sys samples, as a 2 s interval gives on a 0.5 s step
BROKEN_STEP = 59


def _load_at(step: int, run_index: int) -> dict[str, float]:
    # A CUDA-like worker: CPU near two cores, resident memory and GPU memory creeping up.
    return {
        M.SYS_CPU_PERCENT: 180 + 10 * math.sin(step / 7) + 30 * run_index,
        M.SYS_GPU_UTIL: 85 + 5 * math.cos(step / 5),
        M.SYS_RSS_MB: 1400 + 2.0 * step + 200 * run_index,
        M.SYS_GPU_MEM_MB: 3100 + 0.5 * step,
        M.SYS_GPU_MAX_MEM_MB: 4200.0,
    }


def _stream(server, dataset, name: str, run_index: int, *, with_sys: bool = True) -> int:  # type: ignore[no-untyped-def]
    run_id, token = register_run(server, dataset, name=name, max_steps=STEPS)
    reporter = StreamingReporter(server.url, run_id, token, spill_path=dataset.parent / f"spill-{run_id}.jsonl")
    reporter.status("running", total_steps=STEPS)
    for step in range(1, STEPS + 1):
        loss = 2.0 * math.exp(-step / 25) + 0.5
        reporter.metrics(step, {"loss": loss, "nll_loss": loss - 0.1, "or_loss": 0.1, "log_odds_ratio": step / 30})
        if with_sys and (step == 1 or step % SAMPLE_EVERY == 0):
            reporter.metrics(step, _load_at(step, run_index))
        if with_sys and step == BROKEN_STEP:  # a broken reading: stored (as null), drawn as a gap, no alert
            reporter.metrics(step, {M.SYS_CPU_PERCENT: math.nan, M.SYS_RSS_MB: math.inf})
    reporter.status("completed")
    reporter.close(timeout=30)
    return run_id


def _sampled_steps() -> list[int]:
    return [1, *range(SAMPLE_EVERY, STEPS + 1, SAMPLE_EVERY)]


def test_run_page_charts_system_load_and_compare_shows_it_per_run(live_server, page, shot, tiny_dataset_file) -> None:  # type: ignore[no-untyped-def]
    first = _stream(live_server, tiny_dataset_file, "gpu-a", 0)
    second = _stream(live_server, tiny_dataset_file, "gpu-b", 1)
    without = _stream(live_server, tiny_dataset_file, "hf-no-sys", 0, with_sys=False)
    samples = len(_sampled_steps())

    for run_id in (first, second):  # NaN and inf among the sys/ metrics: stored, drawn as gaps, no alert
        run = live_server.api("GET", f"/api/runs/{run_id}").json()
        assert run["status"] == "completed" and run["alerts"] == [], run["alerts"]
        stored = live_server.api("GET", f"/api/runs/{run_id}/metrics", params={"names": M.SYS_CPU_PERCENT}).json()
        cpu = stored["series"][M.SYS_CPU_PERCENT]
        assert cpu["step"] == sorted([*_sampled_steps(), BROKEN_STEP])
        assert [v is None for v in cpu["value"]] == [s == BROKEN_STEP for s in cpu["step"]]

    page.goto(f"{live_server.url}/runs/{first}")
    card = page.locator("#card-system")
    card.wait_for(state="visible")
    # Five series of `samples` points each, and the broken reading's two (points too, drawn as gaps).
    drawn = 5 * samples + 2
    page.wait_for_function(f"() => Number(document.querySelector('[data-metric-group=system]').dataset.pointCount) === {drawn}")
    assert point_count(page, "system") == drawn
    assert "System" in card.locator(".card-title").inner_text()
    traces = page.evaluate(
        """() => document.querySelector('[data-metric-group=system]').data
             .filter(t => t.meta.role !== 'smooth').map(t => ({key: t.meta.key, yaxis: t.yaxis || 'y', n: t.y.length,
                                                              first: t.y[0]}))"""
    )
    by_key = {t["key"]: t for t in traces}
    assert set(by_key) == set(M.SYSTEM_METRICS)
    # Percentages on the left axis, megabytes on the right: 180 % and 1,400 MB never share a scale.
    assert {k for k, t in by_key.items() if t["yaxis"] == "y"} == {M.SYS_CPU_PERCENT, M.SYS_GPU_UTIL}
    assert {k for k, t in by_key.items() if t["yaxis"] == "y2"} == {M.SYS_RSS_MB, M.SYS_GPU_MEM_MB, M.SYS_GPU_MAX_MEM_MB}
    titles = page.evaluate("() => { const l = document.querySelector('[data-metric-group=system]').layout;"
                           " return [l.yaxis.title.text, l.yaxis2.title.text]; }")
    assert titles == ["%", "MiB"]
    assert by_key[M.SYS_RSS_MB]["first"] == pytest.approx(_load_at(1, 0)[M.SYS_RSS_MB])
    # They are not training metrics: the loss chart holds only the objective's lines.
    loss_keys = page.evaluate("() => document.querySelector('[data-metric-group=loss]').data.map(t => t.meta.key)")
    assert not any(M.is_system(key) for key in loss_keys)
    card.scroll_into_view_if_needed()
    shot("run-system-chart")

    page.goto(f"{live_server.url}/runs/{without}")  # a run without sys/ metrics shows no empty System card
    page.wait_for_function("() => Number(document.querySelector('[data-metric-group=loss]').dataset.pointCount) > 0")
    assert page.locator("#card-system").is_hidden()

    page.goto(f"{live_server.url}/compare?runs={first},{second}")
    for name in (M.SYS_CPU_PERCENT, M.SYS_RSS_MB, M.SYS_GPU_UTIL, M.SYS_GPU_MEM_MB):
        chart = f'[data-metric-group="{name}"]'
        per_run = samples + (name in (M.SYS_CPU_PERCENT, M.SYS_RSS_MB))
        page.wait_for_function(f"() => Number(document.querySelector('{chart}').dataset.pointCount) === {2 * per_run}")
        assert page.locator(f'[id="card-{name}"]').is_visible()
    keys = page.evaluate(f"""() => document.querySelector('[data-metric-group="{M.SYS_RSS_MB}"]').data
                             .filter(t => t.meta.role !== 'smooth').map(t => t.meta.key)""")
    assert sorted(keys) == sorted([f"{first}:{M.SYS_RSS_MB}", f"{second}:{M.SYS_RSS_MB}"])
    page.locator(f'[id="card-{M.SYS_RSS_MB}"]').scroll_into_view_if_needed()
    shot("compare-system-charts")
