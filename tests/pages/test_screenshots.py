"""Every page with realistic contents, saved to test-artifacts/ for people to look at: a completed
run with samples and checkpoints, a run training with alerts, a failed run with its error, the
runs list, the compare view and a cloned new-run form. Each page is also checked for what it must show."""

from __future__ import annotations

import httpx
import pytest

from tests.pages.realistic import TRACEBACK, Shape, stream_run

pytestmark = pytest.mark.browser


def _charts_drawn(page, at_least: int) -> None:  # type: ignore[no-untyped-def]
    page.wait_for_function(
        f"() => Number(document.querySelector('[data-metric-group=loss]').dataset.pointCount) >= {at_least}"
    )


def test_screenshots_of_every_page_with_realistic_runs(live_server, page, shot, tiny_dataset_file, tmp_path) -> None:  # type: ignore[no-untyped-def]
    paper, _ = stream_run(live_server, tiny_dataset_file, "smollm2 · paper recipe λ=0.1", total=300, steps=300,
                          shape=Shape(beta=0.1, lr=8e-6, seed=1), status="completed", output_dir=tmp_path / "paper",
                          tags=["baseline"], warmup_ratio=0.1, eval_every=50, sample_every=100, save_every=100,
                          sample_prompts=["Explain in one sentence why the sky is blue."])
    failed, _ = stream_run(live_server, tiny_dataset_file, "fp16 overflow", total=300, steps=85,
                           shape=Shape(beta=0.2, lr=5e-5, seed=2, nan_from=80), status="failed", error=TRACEBACK,
                           dtype="float16")
    higher_lr, _ = stream_run(live_server, tiny_dataset_file, "lr 2e-5 linear", total=300, steps=300,
                              shape=Shape(beta=0.1, lr=2e-5, scheduler="linear", seed=3), status="completed")
    live, reporter = stream_run(live_server, tiny_dataset_file, "λ=1.0 sweep", total=400, steps=260,
                                shape=Shape(beta=1.0, lr=8e-6, seed=4, rise_from=110), status="running",
                                tags=["lambda-sweep"], eval_every=50)
    try:
        # The server's own detectors flag the λ=1.0 run (over-penalisation / rising loss) and the NaN.
        for run_id in (live, failed):
            deadline_hit = True
            for _ in range(100):
                if live_server.api("GET", f"/api/runs/{run_id}").json()["alerts"]:
                    deadline_hit = False
                    break
                page.wait_for_timeout(100)
            assert not deadline_hit, f"run {run_id} raised no alert"

        page.goto(live_server.url + "/")
        page.wait_for_selector(f'tr[data-run-id="{live}"] [data-alert-severity]')
        assert page.locator(f'tr[data-run-id="{failed}"] [data-alert-severity=critical]').count() == 1
        shot("runs-list")

        # Completed run: samples per step, checkpoints whose files download.
        page.goto(f"{live_server.url}/runs/{paper}")
        _charts_drawn(page, 3 * 300)
        page.wait_for_selector("#checkpoints details[open] a[data-file]")
        assert page.locator("#checkpoints > li").count() == 3
        assert page.locator("#samples .sample").count() == 6
        assert page.locator("#run-error").is_hidden() and page.locator("#alert-banner").is_hidden()
        href = page.get_attribute("#checkpoints a[data-file='checkpoint-300/config.json']", "href")
        assert httpx.get(live_server.url + href).json()["model_type"] == "llama"
        shot("run-completed")

        # Failed run: the error, the critical alert with advice, its onset marked.
        page.goto(f"{live_server.url}/runs/{failed}")
        _charts_drawn(page, 3 * 79)
        assert "FloatingPointError" in page.inner_text("#run-error")
        page.wait_for_selector("#alert-banner .banner-critical[data-kind=non_finite]")
        assert "stderr" in (page.get_attribute("#log-tail .log-line:last-child", "class") or "")
        shot("run-failed")

        # Still training, with warnings: live state, banner, markers.
        page.goto(f"{live_server.url}/runs/{live}")
        _charts_drawn(page, 3 * 260)
        page.wait_for_selector("#live-state[data-state=live]")
        page.wait_for_selector("#alert-banner .banner-item")
        assert page.evaluate(
            "() => document.querySelector('[data-metric-group=loss]').layout.shapes.length"
            " + document.querySelector('[data-metric-group=logps]').layout.shapes.length"
        ) >= 1
        shot("run-live-alerts")

        page.goto(f"{live_server.url}/compare?runs={paper},{higher_lr},{live}")
        _charts_drawn(page, 300 + 300 + 260)
        assert page.locator("#run-legend a").count() == 3
        assert page.locator("#diff-table tr[data-field=learning_rate]").count() == 1
        shot("compare-realistic")

        # Clone pre-fills the form from the past run's config; the dataset preview shows pairs.
        page.goto(f"{live_server.url}/runs/new?clone={paper}")
        page.locator("#clone-banner").wait_for(state="visible")
        assert float(page.input_value("#f-learning_rate")) == pytest.approx(8e-6)
        assert page.input_value("#f-beta") == "0.1"
        assert page.input_value("#f-lr_scheduler") == "cosine"
        page.locator("#preview-table").wait_for()
        shot("new-run-clone")
    finally:
        reporter.status("completed")
        reporter.close(timeout=30)
