"""A run left `running` by a dashboard that went down, whose worker never comes back, ends `failed`
with the reason; a worker that does come back later reopens it."""

from __future__ import annotations

import time
from pathlib import Path

from tests.conftest import _serve
from trainer.streaming import StreamingReporter


def _status(server, run_id: int) -> dict:  # type: ignore[no-untyped-def]
    return server.api("GET", f"/api/runs/{run_id}").json()


def _settled(server, run_id: int) -> dict:  # type: ignore[no-untyped-def]
    """The run once the restarted dashboard has dealt with it (it stays `running` until then)."""
    deadline = time.monotonic() + 15
    while (run := _status(server, run_id))["status"] == "running":
        assert time.monotonic() < deadline, "the restarted dashboard never settled the orphaned run"
        time.sleep(0.2)
    return run


def test_orphaned_run_fails_after_the_grace_period_and_a_returning_worker_reopens_it(tmp_path: Path, tiny_dataset_file) -> None:  # type: ignore[no-untyped-def]
    for server in _serve(tmp_path, None, {"ORPO_DASH_ORPHAN_GRACE_SECONDS": "1"}):
        created = server.api("POST", "/api/runs", params={"launch": "false"}, json={"dataset": str(tiny_dataset_file)}).json()
        run_id, token = created["id"], created["worker_token"]
        assert created["status"] == "running"
        server.kill()  # the dashboard dies; this run's worker is gone too
        server.start()
        run = _settled(server, run_id)
        assert run["status"] == "failed" and "did not reconnect" in run["error"]

        reporter = StreamingReporter(server.url, run_id, token, spill_path=tmp_path / "spill.jsonl")
        reporter.status("running", total_steps=3)
        reporter.metrics(1, {"loss": 1.0})
        reporter.close(timeout=20)
        run = _status(server, run_id)
        assert run["status"] == "running" and run["error"] is None and run["last_step"] == 1


def test_a_worker_that_finished_while_the_dashboard_was_down_is_delivered_not_failed(tmp_path: Path, tiny_dataset_file) -> None:  # type: ignore[no-untyped-def]
    output_dir = tmp_path / "out"
    for server in _serve(tmp_path, None, {"ORPO_DASH_ORPHAN_GRACE_SECONDS": "1"}):
        created = server.api("POST", "/api/runs", params={"launch": "false"},
                             json={"dataset": str(tiny_dataset_file), "output_dir": str(output_dir)}).json()
        run_id, token = created["id"], created["worker_token"]
        server.kill()
        # The worker trains on with the dashboard down, finishes, and leaves everything in its spill
        # file, named and placed as trainer.worker does it.
        spill = output_dir / f"orpo-dash-spill-run{run_id}-12345.jsonl"
        reporter = StreamingReporter(server.url, run_id, token, spill_path=spill)
        reporter.status("running", total_steps=3)
        for step in (1, 2, 3):
            reporter.metrics(step, {"loss": 1.0 / step})
        reporter.log("saved checkpoint out/checkpoint-3")
        reporter.status("completed")
        reporter.close(timeout=2)
        assert spill.exists()
        server.start()
        run = _settled(server, run_id)
        assert run["status"] == "completed" and run["last_step"] == 3 and run["error"] is None
        deadline = time.monotonic() + 10  # removed just after its last batch commits
        while spill.exists():
            assert time.monotonic() < deadline, "the delivered spill file was left behind"
            time.sleep(0.1)
        logs = [line["text"] for line in server.api("GET", f"/api/runs/{run_id}/logs").json()]
        assert logs == ["saved checkpoint out/checkpoint-3"]
