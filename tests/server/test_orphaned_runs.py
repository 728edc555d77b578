"""A run left `running` by a dashboard that went down, whose worker never comes back, ends `failed`
with the reason; a worker that does come back later reopens it."""

from __future__ import annotations

import time
from pathlib import Path

from tests.conftest import _serve
from trainer.streaming import StreamingReporter


def _status(server, run_id: int) -> dict:  # type: ignore[no-untyped-def]
    return server.api("GET", f"/api/runs/{run_id}").json()


def test_orphaned_run_fails_after_the_grace_period_and_a_returning_worker_reopens_it(tmp_path: Path, tiny_dataset_file) -> None:  # type: ignore[no-untyped-def]
    for server in _serve(tmp_path, None, {"ORPO_DASH_ORPHAN_GRACE_SECONDS": "1"}):
        created = server.api("POST", "/api/runs", params={"launch": "false"}, json={"dataset": str(tiny_dataset_file)}).json()
        run_id, token = created["id"], created["worker_token"]
        assert created["status"] == "running"
        server.kill()  # the dashboard dies; this run's worker is gone too
        server.start()
        deadline = time.monotonic() + 15
        while _status(server, run_id)["status"] == "running":
            assert time.monotonic() < deadline, "the orphaned run was never marked failed"
            time.sleep(0.2)
        run = _status(server, run_id)
        assert run["status"] == "failed" and "did not reconnect" in run["error"]

        reporter = StreamingReporter(server.url, run_id, token, spill_path=tmp_path / "spill.jsonl")
        reporter.status("running", total_steps=3)
        reporter.metrics(1, {"loss": 1.0})
        reporter.close(timeout=20)
        run = _status(server, run_id)
        assert run["status"] == "running" and run["error"] is None and run["last_step"] == 1
