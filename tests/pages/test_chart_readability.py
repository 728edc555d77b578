"""Charts a person can read (issue 20 point 4), fed through the real worker protocol: a lone first
point is a visible marker, log scale never blanks a chart whose metric goes below zero, hover names
the raw and the smoothed value, tick labels never repeat, every y axis says what it shows and in
which unit, accuracy has a chart of its own, and a fast stream redraws each chart at most ~4 times a
second."""

from __future__ import annotations

import itertools
import math
from typing import Any

import pytest

from server.charts import CHART_GROUPS, METRIC_AXES
from tests.pages.conftest import register_run
from tests.pages.realistic import Shape, metrics_at, stream_run
from trainer.streaming import StreamingReporter

pytestmark = pytest.mark.browser

# What each run-page chart draws once a realistic run has logged a while ("other" only appears for
# metrics outside the groups, "system" with sys/ metrics; neither is streamed here).
SHOWN_GROUPS = [g for g in CHART_GROUPS if g.id not in ("other", "system")]


def _wait_points(page: Any, group: str, at_least: int) -> None:
    page.wait_for_function(
        f"() => Number(document.querySelector('[data-metric-group={group}]').dataset.pointCount) >= {at_least}"
    )


def _set_log_scale(page: Any, on: bool) -> None:
    if page.is_checked("#log-y") != on:
        page.click("#log-y")


def _set_smoothing(page: Any, value: float) -> None:
    page.eval_on_selector(
        "#smoothing", "(el, v) => { el.value = v; el.dispatchEvent(new Event('input', {bubbles: true})); }", value
    )


def _tick_labels(page: Any, group: str, axis: str = "y") -> list[str]:
    return page.eval_on_selector_all(
        f"[data-metric-group={group}] .{axis}tick text", "els => els.map(e => e.textContent)"
    )


def _drawn_paths(page: Any, group: str) -> int:
    """Lines and markers Plotly actually drew with a non-empty shape in one chart's SVG."""
    return page.eval_on_selector_all(
        f"[data-metric-group={group}] .scatterlayer path",
        "els => els.filter(e => (e.getAttribute('d') || '').length > 2 && e.getBBox().width + e.getBBox().height > 0).length",
    )


def _realistic_run(server: Any, dataset: Any, steps: int = 120) -> int:
    run_id, _ = stream_run(server, dataset, "readable charts", total=steps, steps=steps,
                           shape=Shape(beta=0.1, lr=8e-6, seed=5), status="completed", eval_every=50)
    return run_id


def test_a_single_point_is_a_visible_marker_until_a_line_exists(live_server, page, shot, tiny_dataset_file) -> None:  # type: ignore[no-untyped-def]
    run_id, token = register_run(live_server, tiny_dataset_file, name="first step")
    reporter = StreamingReporter(live_server.url, run_id, token)
    reporter.status("running", total_steps=100)
    reporter.metrics(1, metrics_at(1, 100, Shape()))
    try:
        page.goto(f"{live_server.url}/runs/{run_id}")
        _wait_points(page, "loss", 3)
        for group in ("loss", "accuracy", "logps"):
            page.wait_for_function(f"() => document.querySelectorAll('[data-metric-group={group}] .scatterlayer .point').length > 0")
            box = page.locator(f"[data-metric-group={group}] .scatterlayer .point").first.bounding_box()
            assert box is not None and box["width"] >= 5 and box["height"] >= 5, (group, box)
        modes = page.evaluate("() => document.querySelector('[data-metric-group=loss]').data.filter(t => t.visible !== false).map(t => t.mode)")
        assert modes and all("markers" in m for m in modes), modes
        shot("chart-single-point")

        # The second point makes a line: the markers go (eval lines keep theirs, they are sparse).
        reporter.metrics(2, metrics_at(2, 100, Shape()))
        _wait_points(page, "loss", 6)
        page.wait_for_function(
            "() => document.querySelector('[data-metric-group=loss]').data.filter(t => t.meta.train && t.visible !== false)"
            ".every(t => t.mode === 'lines')"
        )
        assert _drawn_paths(page, "loss") >= 3
    finally:
        reporter.status("completed")
        reporter.close(timeout=30)


def test_log_scale_keeps_charts_of_signed_metrics_linear_with_a_note(live_server, page, shot, tiny_dataset_file) -> None:  # type: ignore[no-untyped-def]
    run_id = _realistic_run(live_server, tiny_dataset_file)
    page.goto(f"{live_server.url}/runs/{run_id}")
    _wait_points(page, "logps", 2 * 120)
    _set_log_scale(page, False)
    assert page.locator(".log-note:visible").count() == 0
    linear_paths = {g: _drawn_paths(page, g) for g in ("logps", "preference", "accuracy", "loss")}

    _set_log_scale(page, True)
    page.wait_for_function("() => document.querySelector('[data-metric-group=loss]').dataset.yScale === 'log'")
    page.wait_for_function("() => document.querySelector('[data-metric-group=loss]')._fullLayout.yaxis.type === 'log'")
    for group, metric in (("logps", "logps_chosen"), ("preference", "log_odds_ratio"), ("accuracy", "accuracy")):
        chart = page.locator(f"[data-metric-group={group}]")
        assert chart.get_attribute("data-y-scale") == "linear"
        assert page.evaluate(f"() => document.querySelector('[data-metric-group={group}]')._fullLayout.yaxis.type") == "linear"
        note = page.locator(f"#card-{group} .log-note")
        assert note.is_visible(), group
        assert metric in note.inner_text() and "linear" in note.inner_text()
        # Still drawn: the same lines as on the linear scale, none blanked.
        assert _drawn_paths(page, group) == linear_paths[group] > 0, group
    # Positive metrics do go log, and stay drawn; the right axes follow their own metric.
    assert _drawn_paths(page, "loss") == linear_paths["loss"]
    assert page.locator("#card-loss .log-note").is_hidden()
    assert page.get_attribute("[data-metric-group=optimisation]", "data-y2-scale") == "log"
    assert "stay linear" in (page.get_attribute("label[for=log-y]", "title") or "")
    shot("chart-log-scale")

    # The compare page reads the same metric descriptions.
    page.goto(f"{live_server.url}/compare?runs={run_id}")
    _wait_points(page, "logps_chosen", 120)
    _set_log_scale(page, True)  # the compare page keeps its own chart options
    page.wait_for_function("() => document.querySelector('[data-metric-group=loss]').dataset.yScale === 'log'")
    assert page.get_attribute("[data-metric-group=logps_chosen]", "data-y-scale") == "linear"
    assert "logps_chosen" in page.inner_text("#card-logps_chosen .log-note")
    assert _drawn_paths(page, "logps_chosen") > 0
    _set_log_scale(page, False)
    page.wait_for_function("() => document.querySelector('[data-metric-group=loss]').dataset.yScale === 'linear'")
    assert page.locator(".log-note:visible").count() == 0


def test_hover_names_the_raw_and_the_smoothed_value(live_server, page, shot, artifacts_dir, tiny_dataset_file) -> None:  # type: ignore[no-untyped-def]
    run_id = _realistic_run(live_server, tiny_dataset_file)
    page.goto(f"{live_server.url}/runs/{run_id}")
    _wait_points(page, "loss", 3 * 120)

    def hover_text(smoothing: float) -> str:
        _set_smoothing(page, smoothing)
        page.wait_for_function(
            "() => document.querySelector('[data-metric-group=loss]').data.some(t => t.meta.key === 'loss' && "
            f"t.meta.role === 'smooth' && t.visible === {str(smoothing > 0).lower()})"
        )
        page.mouse.move(0, 0)
        box = page.locator("[data-metric-group=loss] .nsewdrag").first.bounding_box()
        assert box is not None
        page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5)
        page.wait_for_selector("[data-metric-group=loss] .hoverlayer text")
        return " ".join(page.eval_on_selector_all("[data-metric-group=loss] .hoverlayer text", "els => els.map(e => e.textContent)"))

    smoothed = hover_text(0.8)
    for name in ("loss", "nll_loss", "or_loss"):
        assert f"{name} (raw):" in smoothed and f"{name} (smoothed):" in smoothed, smoothed
    # Both numbers are there and differ (the EMA lags a noisy curve).
    raw_value = float(smoothed.split("loss (raw):")[1].split()[0])
    smooth_value = float(smoothed.split("loss (smoothed):")[1].split()[0])
    assert math.isfinite(raw_value) and math.isfinite(smooth_value) and raw_value != smooth_value
    # The card alone: a full-page screenshot resizes the viewport, which ends the hover.
    page.locator("#card-loss").screenshot(path=str(artifacts_dir / "pages-chart-hover-raw-and-smoothed.png"))

    plain = hover_text(0)
    assert "loss:" in plain and "(smoothed)" not in plain and "(raw)" not in plain, plain


def test_tick_labels_never_repeat(live_server, page, shot, tiny_dataset_file) -> None:  # type: ignore[no-untyped-def]
    # A loss that moves only in the fourth digit (".4~g" printed "14.9" five times) and a tiny learning rate.
    run_id, token = register_run(live_server, tiny_dataset_file, name="flat loss")
    reporter = StreamingReporter(live_server.url, run_id, token)
    reporter.status("running", total_steps=40)
    for step in range(1, 41):
        metrics = metrics_at(step, 40, Shape(seed=6))
        metrics.update(loss=14.9 + 0.0002 * step, nll_loss=14.9 + 0.0001 * step, or_loss=14.9 + 0.00015 * step,
                       learning_rate=8e-6 + 1e-9 * step)
        reporter.metrics(step, metrics)
    reporter.status("completed")
    reporter.close(timeout=30)
    realistic = _realistic_run(live_server, tiny_dataset_file)

    for rid, steps in ((run_id, 40), (realistic, 120)):
        page.goto(f"{live_server.url}/runs/{rid}")
        _wait_points(page, "throughput", steps)
        for log_scale in (False, True):
            _set_log_scale(page, log_scale)
            page.wait_for_function(f"() => document.querySelector('[data-metric-group=loss]').dataset.yScale === '{'log' if log_scale else 'linear'}'")
            for group in SHOWN_GROUPS:
                axes = ["y", "y2"] if group.right else ["y"]
                for axis in axes:
                    labels = _tick_labels(page, group.id, axis)
                    assert len(labels) >= 2, (rid, group.id, axis, labels)
                    assert len(set(labels)) == len(labels), (rid, group.id, axis, log_scale, labels)
        if rid == run_id:
            _set_log_scale(page, False)
            page.wait_for_function("() => document.querySelector('[data-metric-group=loss]').dataset.yScale === 'linear'")
            # Tiny learning rates read as 8e-6, not 0.000008.
            assert not any(t.startswith("0.0000") for t in _tick_labels(page, "optimisation", "y2"))
            shot("chart-ticks-flat-loss")


def test_every_y_axis_has_a_title_with_its_unit_and_accuracy_its_own_chart(live_server, page, shot, tiny_dataset_file) -> None:  # type: ignore[no-untyped-def]
    run_id = _realistic_run(live_server, tiny_dataset_file)
    page.goto(f"{live_server.url}/runs/{run_id}")
    _wait_points(page, "throughput", 120)
    for group in SHOWN_GROUPS:
        titles = page.eval_on_selector_all(f"[data-metric-group={group.id}] .g-ytitle text, [data-metric-group={group.id}] .g-y2title text",
                                           "els => els.map(e => e.textContent)")
        expected = [group.y_title] + ([group.y2_title] if group.right else [])
        assert titles == expected and all(titles), (group.id, titles)
    assert "nats" in page.text_content("[data-metric-group=loss] .g-ytitle text")
    assert "log-prob per token" in page.text_content("[data-metric-group=logps] .g-ytitle text")
    assert "fraction" in page.text_content("[data-metric-group=accuracy] .g-ytitle text")

    # Accuracy (train and eval) in its own chart, on one axis; the preference chart has no second axis.
    keys = lambda group: page.evaluate(  # noqa: E731
        f"() => [...new Set(document.querySelector('[data-metric-group={group}]').data.map(t => t.meta.key))]"
    )
    assert sorted(keys("accuracy")) == ["accuracy", "eval/accuracy"]
    assert "accuracy" not in keys("preference") and "eval/accuracy" not in keys("preference")
    assert page.evaluate("() => document.querySelector('[data-metric-group=preference]')._fullLayout.yaxis2") is None
    assert page.locator("#card-preference .axis-note").count() == 0
    page.locator("#card-accuracy").scroll_into_view_if_needed()
    shot("chart-axis-titles")

    page.goto(f"{live_server.url}/compare?runs={run_id}")
    _wait_points(page, "accuracy", 120)
    for metric in ("loss", "log_odds_ratio", "accuracy", "logps_chosen", "learning_rate", "grad_norm"):
        assert page.text_content(f"[data-metric-group={metric}] .g-ytitle text") == METRIC_AXES[metric].title


def test_a_fast_stream_redraws_a_chart_at_most_four_times_a_second(live_server, page, tiny_dataset_file) -> None:  # type: ignore[no-untyped-def]
    """The page's own ChartPanel, fed a point on every animation frame for 3 s (a tiny model on a fast
    machine). Through the server this machine delivers only a few batches a second, too few to tell a
    throttled chart from one that redraws on every frame, so the points come from inside the page."""
    run_id, _ = stream_run(live_server, tiny_dataset_file, "host page", total=5, steps=5, shape=Shape(), status="completed")
    page.goto(f"{live_server.url}/runs/{run_id}")
    _wait_points(page, "loss", 15)
    result = page.evaluate("""() => new Promise((resolve) => {
        const div = document.createElement("div");
        div.className = "chart";
        document.querySelector(".chart-grid").prepend(div);
        const series = new Charts.Series();
        const panel = new Charts.ChartPanel(div, { options: { smoothing: 0.6, xMode: "step", logY: false } });
        panel.addLine({ key: "loss", label: "loss", series, timeline: new Charts.Timeline(() => series),
                        color: "#0072B2", train: true });
        const draws = [];
        for (const name of ["react", "extendTraces"]) {
            const original = Plotly[name];
            Plotly[name] = function (target, ...rest) {
                if (target === div) draws.push(performance.now());
                return original.call(this, target, ...rest);
            };
        }
        const started = performance.now();
        let step = 0;
        function feed() {
            step += 1;
            series.add(step, 1 + Math.sin(step / 9), Date.now() / 1000);
            panel.grew("loss");
            if (performance.now() - started < 3000) { requestAnimationFrame(feed); return; }
            const fed = performance.now();
            // Every point is drawn soon after the last one arrives: tests that wait for
            // data-point-count keep working.
            const check = () => {
                if (Number(div.dataset.pointCount) === step) {
                    resolve({ draws, steps: step, seconds: (fed - started) / 1000, lag: performance.now() - fed });
                } else setTimeout(check, 10);
            };
            check();
        }
        requestAnimationFrame(feed);
    })""")
    draws, seconds = result["draws"], result["seconds"]
    gaps = [b - a for a, b in itertools.pairwise(draws)]
    assert draws and result["steps"] > 2 * len(draws), result  # points were coalesced, not drawn one frame each
    assert all(gap >= 240 for gap in gaps), [round(g) for g in gaps]
    assert len(draws) <= 4 * seconds + 2, (len(draws), seconds)
    # A round waits 4x the last one's cost (seconds on a loaded machine): still within a test's 20 s wait.
    assert result["lag"] < 15_000, result
