"""Issue 20, points 3, 5 and 6 through a real dashboard, real tiny-model workers and headless Chromium:
two runs train at once while a third shows its place in line; that third run keeps only the
checkpoints its retention settings name, and the page shows their size; the worker-log panel has
the per-step lines worker.log has; a phase replaces the ETA while the worker evaluates."""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import LiveServer, _serve
from tests.pages.conftest import register_run
from trainer.streaming import StreamingReporter

LONG = 100_000  # steps: the two first runs train until the test stops them


def _tiny(model: Path, dataset: Path, name: str, **config: Any) -> dict:
    return {"name": name, "model": str(model), "dataset": str(dataset), "batch_size": 2, "max_length": 64,
            "max_prompt_length": 32, "learning_rate": 1e-3, "eval_fraction": 0.2, "seed": 0, **config}


def _wait(what: str, check, timeout: float = 240.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def _runs(server: LiveServer) -> dict[int, dict]:
    return {run["id"]: run for run in server.api("GET", "/api/runs").json()}


def _all_training(server: LiveServer, ids: list[int]) -> dict[int, dict] | None:
    """Every run listed, when all of `ids` are running and past their second step at once."""
    runs = _runs(server)
    return runs if all(runs[i]["status"] == "running" and (runs[i]["last_step"] or 0) >= 2 for i in ids) else None


@pytest.mark.slow
def test_two_runs_train_at_once_the_third_waits_in_line_then_keeps_its_last_two_checkpoints(
        tmp_path, page, shot, tiny_model_dir, tiny_dataset_file) -> None:  # type: ignore[no-untyped-def]
    # Two workers training flat out share the machine with the server and the browser: allow for it.
    page.set_default_timeout(120_000)
    for server in _serve(tmp_path, None, {"ORPO_DASH_MAX_CONCURRENT_RUNS": "2"}):
        ids = [server.api("POST", "/api/runs", json=_tiny(tiny_model_dir, tiny_dataset_file, name, max_steps=LONG)).json()["id"]
               for name in ("first", "second")]
        third = server.api("POST", "/api/runs", json=_tiny(
            tiny_model_dir, tiny_dataset_file, "third", max_steps=4, save_every=1, keep_last_checkpoints=2,
            keep_best_checkpoint=False)).json()
        assert third["status"] == "queued" and third["queue_position"] == 1 and third["total_steps"] == 4

        # Both earlier runs running with steps done, at the same moment, while the third still waits.
        both = _wait("both runs training", functools.partial(_all_training, server, ids))
        assert both[third["id"]]["status"] == "queued" and both[third["id"]]["queue_position"] == 1
        assert all(both[i]["total_steps"] == LONG for i in ids)

        page.goto(f"{server.url}/runs/{third['id']}")
        page.wait_for_function("() => document.getElementById('progress-text').textContent.includes('queued, 1st in line')")
        assert "4 steps planned" in page.inner_text("#progress-text")
        assert page.is_hidden("#output-dir-line")  # nothing saved yet: no folder to show
        shot("queue-run-page")
        page.goto(server.url)
        row = f"tr[data-run-id='{third['id']}'] .progress-label"
        page.wait_for_function(f"() => (document.querySelector(\"{row}\") || {{}}).textContent === 'queued, 1st in line · 4 steps'")
        for run_id in ids:
            label = page.inner_text(f"tr[data-run-id='{run_id}'] .progress-label")
            assert label.endswith(f"/{LONG}") and int(label.split("/")[0]) >= 2, label
        shot("queue-runs-list")

        # A slot frees up: the third run starts, trains its 4 steps and keeps checkpoints 3 and 4 only.
        assert server.api("POST", f"/api/runs/{ids[0]}/stop").status_code == 200
        done = server.wait_for_run(third["id"], ("completed", "failed"), timeout=240)
        assert done["status"] == "completed", done["error"]
        output = Path(done["output_dir"])
        assert sorted(p.name for p in output.iterdir() if p.name.startswith("checkpoint-")) == ["checkpoint-3", "checkpoint-4"]
        assert [Path(p).name for p in done["checkpoints"]] == ["checkpoint-3", "checkpoint-4"]
        on_disk = sum(f.stat().st_size for f in output.rglob("*") if f.is_file() and "checkpoint-" in str(f.relative_to(output)))
        assert done["checkpoint_bytes"] == on_disk > 0
        # Optimizer state is off by default: no AdamW moments, so far less than weights x 3.
        weights = sum(f.stat().st_size for f in (output / "checkpoint-4").glob("*.safetensors"))
        assert on_disk < 2 * (2 * weights) + 2_000_000

        page.goto(f"{server.url}/runs/{third['id']}")
        page.wait_for_function("() => document.getElementById('checkpoints-size').textContent !== ''")
        shown = page.inner_text("#checkpoints-size")
        assert shown == page.evaluate(f"RunProgress.fmtBytes({on_disk})"), shown
        assert page.inner_text("#checkpoints-count") == "2" and page.is_visible("#output-dir-line")
        # The folders' files come from a second request after the run's: wait for them to be drawn.
        page.locator("#checkpoints li.checkpoint summary", has_text="checkpoint-4").wait_for()
        assert page.locator("#checkpoints li.checkpoint summary", has_text="checkpoint-4").count() == 1
        # The worker-log panel shows the per-step lines of worker.log.
        worker_log = (server.data_dir / "runs" / str(third["id"]) / "worker.log").read_text()
        assert "step 4:" in worker_log
        page.wait_for_function("() => document.getElementById('log-tail').textContent.includes('step 4:')")
        page.goto(server.url)
        page.wait_for_function("() => !document.getElementById('storage-line').hidden")
        assert "checkpoints" in page.inner_text("#storage-line") and "free" in page.inner_text("#storage-line")
        cell = page.inner_text(f"tr[data-run-id='{third['id']}'] td[data-checkpoint-bytes]")
        assert cell == shown
        page.goto(f"{server.url}/runs/{third['id']}")
        page.wait_for_function("() => document.getElementById('checkpoints-size').textContent !== ''")
        shot("retention-checkpoints")

        # Delete checkpoints from the page: the run stays, its checkpoints go.
        page.click("#delete-checkpoints-btn")
        page.click("#confirm-ok")
        page.wait_for_function("() => document.getElementById('checkpoints-count').textContent === '0'")
        assert not any(p.name.startswith("checkpoint-") for p in output.iterdir())
        assert server.api("GET", f"/api/runs/{third['id']}").json()["status"] == "completed"

        assert server.api("POST", f"/api/runs/{ids[1]}/stop").status_code == 200
        for run_id in ids:
            assert server.wait_for_run(run_id, ("stopped", "failed"), timeout=120)["status"] == "stopped"


def test_the_page_shows_the_workers_phase_instead_of_an_eta(live_server, page, tiny_dataset_file) -> None:  # type: ignore[no-untyped-def]
    run_id, token = register_run(live_server, tiny_dataset_file, name="phases")
    reporter = StreamingReporter(live_server.url, run_id, token)
    try:
        reporter.status("running", total_steps=3)
        reporter.phase("training")
        for step in (1, 2, 3):
            reporter.metrics(step, {"loss": 1.0 / step})
            time.sleep(0.05)
        page.goto(f"{live_server.url}/runs/{run_id}")
        page.wait_for_function("() => document.getElementById('progress-text').textContent.includes('ETA')")
        reporter.phase("evaluating", done=2, total=9)
        page.wait_for_function("() => document.getElementById('progress-text').textContent === 'step 3 / 3 · evaluating 3/9'")
        shot_text = page.inner_text("#progress-text")
        reporter.phase("saving checkpoint")
        page.wait_for_function("() => document.getElementById('progress-text').textContent === 'step 3 / 3 · saving checkpoint'")
        assert "ETA" not in shot_text
    finally:
        reporter.status("completed")
        reporter.close(timeout=30)
    page.wait_for_function("() => !document.getElementById('progress-text').textContent.includes('saving')")
