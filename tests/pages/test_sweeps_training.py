"""Issue 17's acceptance in the browser with real training: a 2×2 sweep of a tiny model launched from the
form, its page filling live as the local launcher runs two at a time, the parallel-coordinates chart
(Plotly's parcoords, drawn under the page's CSP) and the table agreeing with each run's own final metrics, and the best run following the chosen metric."""

from __future__ import annotations

import math
import re
import time
from typing import Any

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

METRICS = ("eval/loss", "eval/accuracy", "eval/log_odds_ratio")


def _own_metrics(server: Any, run_id: int) -> dict[str, dict[str, float]]:
    """The run's own eval series (GET /api/runs/{id}/metrics): its last and its best value of each."""
    series = server.api("GET", f"/api/runs/{run_id}/metrics", params={"names": ",".join(METRICS)}).json()["series"]
    out: dict[str, dict[str, float]] = {"final": {}, "best": {}}
    for name in METRICS:
        values = series[name]["value"]
        out["final"][name] = values[-1]
        out["best"][name] = max(values) if name != "eval/loss" else min(values)
    return out


def assert_parcoords_drew(page: Any) -> None:
    """Plotly's own parcoords trace, and its WebGL canvases hold drawn lines: with the standard plotly.js
    under our CSP the trace exists but draws nothing and says "WebGL is not supported"."""
    assert page.evaluate("() => document.getElementById('parcoords')._fullData[0].type") == "parcoords"
    assert "WebGL" not in page.inner_text("#parcoords")
    page.wait_for_timeout(300)  # parcoords draws its lines in an animation frame after newPlot resolves
    painted = focus_pixels(page)
    assert painted > 500, f"parcoords' lines canvas is blank: {painted} painted pixels"


def focus_pixels(page: Any) -> int:
    """How many pixels of parcoords' canvas of bright lines (those inside every dragged range) are drawn."""
    return int(page.evaluate("""() => {
        const c = document.querySelector('#parcoords canvas.gl-canvas-focus');
        const copy = document.createElement('canvas');
        [copy.width, copy.height] = [c.width, c.height];
        const ctx = copy.getContext('2d');
        ctx.drawImage(c, 0, 0);
        const rgba = ctx.getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 3; i < rgba.length; i += 4) if (rgba[i] > 0) n++;
        return n;
    }"""))


def test_a_2x2_sweep_of_a_tiny_model_fills_its_page_live_and_agrees_with_its_runs(
    live_server, page, shot, tiny_model_dir, tiny_dataset_file
) -> None:  # type: ignore[no-untyped-def]
    server = live_server
    page.goto(server.url + "/runs/new?sweep=1")
    page.fill("#f-name", "tiny grid")
    page.fill("#f-model", str(tiny_model_dir))
    page.fill("#f-dataset", str(tiny_dataset_file))
    for field, value in (("max_length", "64"), ("max_prompt_length", "32"), ("batch_size", "2"), ("max_steps", "4"),
                         ("eval_fraction", "0.2"), ("seed", "0")):
        page.fill(f"#f-{field}", value)
    page.click("#section-evaluation > summary")
    page.fill("#f-eval_every", "2")
    page.fill("#f-beta", "0.1, 1")
    page.fill("#f-learning_rate", "1e-3, 3e-3")
    page.fill("#f-sweep_max_concurrent", "2")
    page.wait_for_function("() => document.getElementById('sweep-run-count').textContent === '4'")
    page.click("#submit-btn")
    page.wait_for_url(re.compile(r"/sweeps/\d+$"), timeout=30_000)
    sweep_id = int(page.url.rsplit("/", 1)[1])

    # Live: the page moves on by itself; never more than two of its runs train at once.
    seen_running = 0
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        statuses = page.locator("#sweep-runs tbody tr").evaluate_all("rows => rows.map(r => r.dataset.status)")
        seen_running = max(seen_running, statuses.count("running"))
        assert statuses.count("running") <= 2, statuses
        if len(statuses) == 4 and all(s == "completed" for s in statuses):
            break
        assert not {"failed", "lost", "stopped"} & set(statuses), server.api("GET", f"/api/sweeps/{sweep_id}").json()
        page.wait_for_timeout(300)
    else:
        raise AssertionError(f"the sweep did not finish: {server.api('GET', f'/api/sweeps/{sweep_id}').json()}")
    assert seen_running >= 1  # the page showed a run training, not only the end
    page.wait_for_selector('#live-state[data-state="finished"]')
    sweep = server.api("GET", f"/api/sweeps/{sweep_id}").json()
    assert sorted((r["values"]["beta"], r["values"]["learning_rate"]) for r in sweep["runs"]) == [
        (0.1, 1e-3), (0.1, 3e-3), (1, 1e-3), (1, 3e-3)]

    # The table: each run's final and best eval metrics are its own series' last and best values.
    own = {r["id"]: _own_metrics(server, r["id"]) for r in sweep["runs"]}
    for run_id, values in own.items():
        row = page.locator(f'#sweep-runs tr[data-run-id="{run_id}"]')
        for stat in ("final", "best"):
            for name in METRICS:
                shown = float(row.locator(f'td[data-metric="{stat}:{name}"]').inner_text())
                assert shown == pytest.approx(values[stat][name], rel=1e-3, abs=1e-6), (run_id, stat, name)

    # The chart: Plotly's parcoords trace, drawn (WebGL under the CSP: the strict bundle), one line per run
    # across the swept fields and the chosen metric, each at the run's own values.
    page.wait_for_function("() => document.getElementById('parcoords').dataset.lineCount === '4'")
    assert_parcoords_drew(page)
    assert page.evaluate("() => JSON.parse(document.getElementById('parcoords').dataset.dimensions)") == [
        "beta", "learning_rate", "eval/loss (final)"]
    trace = page.evaluate("() => { const t = document.getElementById('parcoords').data[0];"
                          " return {ids: t.meta.ids, dims: t.dimensions.map(d => [d.label, Array.from(d.values)])}; }")
    assert sorted(trace["ids"]) == sorted(own)
    assert [label for label, _ in trace["dims"]] == ["beta", "learning_rate", "eval/loss (final)"]
    for i, run_id in enumerate(trace["ids"]):
        run = next(r for r in sweep["runs"] if r["id"] == run_id)
        assert [values[i] for _, values in trace["dims"][:2]] == [run["values"]["beta"], run["values"]["learning_rate"]]
        assert trace["dims"][2][1][i] == pytest.approx(own[run_id]["final"]["eval/loss"], rel=1e-9)
    # Drag along the metric's axis: parcoords keeps that range and draws only the runs inside it bright.
    before = focus_pixels(page)
    x, y, w, h = page.locator("#parcoords rect.background").last.evaluate(
        "r => { const b = r.getBoundingClientRect(); return [b.x, b.y, b.width, b.height]; }")
    page.mouse.move(x + w / 2, y + h * 0.02)
    page.mouse.down()
    page.mouse.move(x + w / 2, y + h * 0.6, steps=6)
    page.mouse.up()
    page.wait_for_function("() => document.getElementById('parcoords').data[0].dimensions[2].constraintrange")
    page.wait_for_timeout(300)
    assert focus_pixels(page) < before
    dragged = page.evaluate("() => document.getElementById('parcoords').data[0].dimensions[2].constraintrange")
    shot("sweep-trained-filtered")
    # A redraw with the same metric (here a narrower window; while live, a refresh) keeps the dragged range.
    page.set_viewport_size({"width": 1200, "height": 900})
    page.wait_for_function("() => document.getElementById('parcoords').data[0].meta.ids.length === 4"
                           " && document.getElementById('parcoords').clientWidth < 1200")
    page.wait_for_timeout(500)  # the resize redraw (debounced)
    assert page.evaluate("() => document.getElementById('parcoords').data[0].dimensions[2].constraintrange") == dragged
    assert focus_pixels(page) < before
    page.set_viewport_size({"width": 1400, "height": 900})
    page.reload()  # the next test steps start from an unfiltered chart
    page.wait_for_function("() => document.getElementById('parcoords').dataset.lineCount === '4'")

    # The best run follows the chosen metric: lowest final eval loss, then highest final accuracy.
    def expect_best(choice: str) -> None:
        stat, name = choice.split(":", 1)
        # Ties go to the earlier run.
        if name == "eval/loss":
            pick = min(own, key=lambda i: (own[i][stat][name], i))
        else:
            pick = max(own, key=lambda i: (own[i][stat][name], -i))
        page.wait_for_selector(f'#sweep-runs tr.best-run[data-run-id="{pick}"]')
        assert page.locator("#sweep-runs tr.best-run").count() == 1
        assert page.get_attribute("#best-run-link", "href") == f"/runs/{pick}"
        assert page.locator(f'#sweep-runs tr.best-run td[data-metric="{choice}"].metric-best').count() == 1

    expect_best("final:eval/loss")
    shot("sweep-trained")
    for choice in ("final:eval/accuracy", "best:eval/log_odds_ratio"):
        page.select_option("#best-metric", choice)
        expect_best(choice)
    assert "metric=best%3Aeval%2Flog_odds_ratio" in page.url or "metric=best:eval/log_odds_ratio" in page.url
    page.wait_for_function("() => document.getElementById('parcoords').dataset.dimensions.includes('eval/log_odds_ratio (best)')")
    # parcoords has no line width: the best run alone takes the top of the colour scale (near-black).
    trace = page.evaluate("() => { const t = document.getElementById('parcoords').data[0]; return {ids: t.meta.ids, colour: t.line.color}; }")
    best_id = int((page.get_attribute("#best-run-link", "href") or "").rsplit("/", 1)[1])
    assert [run_id for run_id, c in zip(trace["ids"], trace["colour"], strict=True) if c == 1] == [best_id]
    assert max(c for run_id, c in zip(trace["ids"], trace["colour"], strict=True) if run_id != best_id) < 0.98
    assert page.get_attribute("#parcoords-best a", "href") == f"/runs/{best_id}"

    # Settings: one run each, so the mean is the run's final value and no ± is shown.
    for setting in sweep["settings"]:
        (run_id,) = setting["run_ids"]
        assert setting["mean"]["eval/loss"] == pytest.approx(own[run_id]["final"]["eval/loss"])
    assert page.locator("#sweep-settings tbody tr").count() == 4
    assert page.locator("#sweep-settings .pm").count() == 0


def test_seeds_give_mean_and_std_per_setting_from_the_runs_own_metrics(
    live_server, page, shot, tiny_model_dir, tiny_dataset_file
) -> None:  # type: ignore[no-untyped-def]
    """Two λ values, two seeds each: the settings table shows each setting's mean ± std of the final eval
    metrics over its seeds, which are the statistics of its runs' own last eval values."""
    import statistics

    server = live_server
    config = {"model": str(tiny_model_dir), "dataset": str(tiny_dataset_file), "max_length": 64, "max_prompt_length": 32,
              "batch_size": 2, "max_steps": 3, "eval_fraction": 0.2, "eval_every": 3, "learning_rate": 1e-3, "seed": 0}
    created = server.api("POST", "/api/sweeps", json={"name": "seeded", "config": config, "axes": {"beta": "log 0.1..1, 2 values"},
                                                      "seeds": 2, "max_concurrent": 2})
    assert created.status_code == 201, created.text
    sweep_id = created.json()["id"]
    page.goto(f"{server.url}/sweeps/{sweep_id}")
    page.wait_for_selector('#live-state[data-state="finished"]', timeout=300_000)
    sweep = server.api("GET", f"/api/sweeps/{sweep_id}").json()
    assert {r["status"] for r in sweep["runs"]} == {"completed"}, sweep
    assert page.is_hidden("#settings-note")  # the "one seed per setting" hint is for sweeps without repeats

    rows = page.locator("#sweep-settings tbody tr")
    assert rows.count() == 2
    for i, setting in enumerate(sweep["settings"]):
        finals = [_own_metrics(server, run_id)["final"] for run_id in setting["run_ids"]]
        assert len(finals) == 2 and setting["n"] == 2
        row = rows.nth(i)
        assert float(row.locator('[data-field="beta"]').inner_text().replace("★ best", "")) == setting["values"]["beta"]
        for name in METRICS:
            values = [f[name] for f in finals]
            text = row.locator(f'td[data-metric="{name}"]').inner_text()
            mean, _, std = text.partition("±")
            assert float(mean) == pytest.approx(statistics.fmean(values), rel=1e-3, abs=1e-6), (name, text)
            if values[0] != values[1]:
                assert float(std) == pytest.approx(statistics.stdev(values), rel=0.05, abs=1e-6), (name, text)  # shown to 2 significant digits
    # beta swept as a log range: parcoords has no log axis, so the chart draws log10(beta) and labels the
    # ticks with the real values.
    assert_parcoords_drew(page)
    beta = page.evaluate("() => { const d = document.getElementById('parcoords').data[0].dimensions[0];"
                         " return {label: d.label, values: Array.from(d.values), tickvals: d.tickvals, ticktext: d.ticktext}; }")
    ids = page.evaluate("() => document.getElementById('parcoords').data[0].meta.ids")
    real = {r["id"]: r["values"]["beta"] for r in sweep["runs"]}
    assert beta["label"] == "beta (log)" and sorted(set(real.values())) == [0.1, 1]
    assert beta["values"] == pytest.approx([math.log10(real[i]) for i in ids])
    assert beta["tickvals"] == pytest.approx([-1, 0]) and beta["ticktext"] == ["0.1", "1"]
    axis_text = page.locator("#parcoords .axis .tick text").evaluate_all("ts => ts.map(t => t.textContent)")
    assert "0.1" in axis_text and "1" in axis_text, axis_text
    shot("sweep-seeds")

    # The same page on a phone: nothing scrolls sideways, the chart is drawn.
    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_timeout(500)  # the resize redraw (debounced)
    width, inner = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    assert width <= inner, f"/sweeps/{sweep_id} is {width} px wide at {inner} px"
    assert page.locator("#parcoords .main-svg").first.bounding_box()["width"] <= inner
    assert_parcoords_drew(page)
    assert page.evaluate("() => JSON.parse(document.getElementById('parcoords').dataset.dimensions)") == [
        "beta", "seed", "eval/loss (final)"]
    shot("layout-390-sweep-seeds")
