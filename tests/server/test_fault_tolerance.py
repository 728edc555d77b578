"""Issue 4's fault test: a worker streams 5,000 steps while the server is SIGKILLed twice and restarted.
The database must end with every step exactly once (points and log lines), and the API must serve them."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import httpx
import pytest

STEPS = 5000
METRICS = ("loss", "nll_loss", "or_loss", "log_odds_ratio", "accuracy")

WORKER = textwrap.dedent(
    """
    import sys, time
    from trainer.streaming import StreamingReporter
    url, run_id, token, spill, steps = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
    reporter = StreamingReporter(url, run_id, token, spill_path=spill)
    reporter.status("running", total_steps=steps)
    for step in range(1, steps + 1):
        reporter.metrics(step, {name: step + i / 10 for i, name in enumerate(%r)})
        if step %% 100 == 0:
            reporter.log(f"reached step {step}")
        time.sleep(0.002)  # about 5 s of "training" in total, so the kills land mid-stream
    reporter.status("completed")
    reporter.close(timeout=60)
    print("delivered", reporter.delivered_batches, "spilled", reporter.undelivered_batches)
    """
) % (METRICS,)


@pytest.mark.slow
def test_worker_survives_two_server_kills(live_server, tiny_dataset_file, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    created = live_server.api("POST", "/api/runs", params={"launch": "false"}, json={"dataset": str(tiny_dataset_file)})
    run_id, token = created.json()["id"], created.json()["worker_token"]
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER, live_server.url, str(run_id), token, str(tmp_path / "spill.jsonl"), str(STEPS)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    for _ in range(2):
        _wait_until_some_steps_arrive(live_server, run_id)
        live_server.kill()
        time.sleep(0.7)  # the worker keeps training with nobody listening
        live_server.start()
    output, _ = worker.communicate(timeout=120)
    assert worker.returncode == 0, output
    assert "spilled 0" in output, output

    run = live_server.api("GET", f"/api/runs/{run_id}").json()
    assert run["status"] == "completed"
    assert run["last_step"] == STEPS
    series = live_server.api("GET", f"/api/runs/{run_id}/metrics", params={"max_points": 20000}).json()["series"]
    for i, name in enumerate(METRICS):
        assert series[name]["step"] == list(range(1, STEPS + 1)), name
        assert series[name]["value"][:3] == [1 + i / 10, 2 + i / 10, 3 + i / 10]
    logs = live_server.api("GET", f"/api/runs/{run_id}/logs", params={"tail": 5000}).json()
    assert [line["text"] for line in logs] == [f"reached step {s}" for s in range(100, STEPS + 1, 100)]


def _wait_until_some_steps_arrive(server, run_id: int) -> None:  # type: ignore[no-untyped-def]
    start = server.api("GET", f"/api/runs/{run_id}").json()["last_step"] or 0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            last = server.api("GET", f"/api/runs/{run_id}").json()["last_step"] or 0
        except httpx.HTTPError:
            last = 0
        if last >= start + 300:
            return
        time.sleep(0.05)
    raise AssertionError("the worker's steps stopped arriving")


@pytest.mark.slow
def test_a_closing_worker_waits_out_a_slow_restart_within_its_close_timeout(live_server, tiny_dataset_file, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The worker ends while its dashboard restarts, and the restart takes longer than a few seconds
    (as on a busy machine): what it has left is delivered within close()'s timeout, not spilled."""
    from trainer.streaming import StreamingReporter

    created = live_server.api("POST", "/api/runs", params={"launch": "false"}, json={"dataset": str(tiny_dataset_file)})
    run_id, token = created.json()["id"], created.json()["worker_token"]
    reporter = StreamingReporter(live_server.url, run_id, token, spill_path=tmp_path / "spill.jsonl")
    reporter.metrics(1, {"loss": 1.0})
    assert reporter.connected.wait(10)
    live_server.kill()
    reporter.metrics(2, {"loss": 2.0})
    reporter.status("completed")
    restart = threading.Timer(7.0, live_server.start)  # down for longer than any short grace
    restart.start()
    reporter.close(timeout=60)
    restart.join()
    assert reporter.undelivered_batches == 0
    run = live_server.api("GET", f"/api/runs/{run_id}").json()
    assert run["status"] == "completed" and run["last_step"] == 2
