"""Issue 14: runs never hang. A running run whose worker sends nothing for worker_timeout (here 5 s)
becomes `lost` with its last log lines in the error, also when it was running before a dashboard
restart; a worker that only goes quiet (heartbeats) stays running; a lost worker that comes back is
told so and its points are still kept."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from websockets.sync.client import connect

from tests.conftest import _serve
from tests.server.test_worker_stream import _hello, _register, _send
from tests.test_end_to_end import _tiny_run, _worker_pids
from trainer.streaming import StreamingReporter, websocket_url

TIMEOUT = 5.0
FAST = {"ORPO_DASH_WORKER_TIMEOUT": str(TIMEOUT)}


def _run(server, run_id: int) -> dict:  # type: ignore[no-untyped-def]
    return server.api("GET", f"/api/runs/{run_id}").json()


def _wait_status(server, run_id: int, status: str, within: float) -> float:  # type: ignore[no-untyped-def]
    """Seconds until the run had `status`; fails after `within`."""
    started = time.monotonic()
    while (run := _run(server, run_id))["status"] != status:
        assert time.monotonic() - started < within, f"run {run_id} stayed {run['status']} (wanted {status})"
        time.sleep(0.2)
    return time.monotonic() - started


def test_a_paused_worker_is_lost_within_the_timeout_and_stops_when_it_runs_again(tmp_path: Path, tiny_model_dir, tiny_dataset_file) -> None:  # type: ignore[no-untyped-def]
    for server in _serve(tmp_path, None, FAST):
        run_id = server.api("POST", "/api/runs", json=_tiny_run(tiny_model_dir, tiny_dataset_file, max_steps=5000,
                                                                 output_dir=str(tmp_path / "out"))).json()["id"]
        deadline = time.monotonic() + 120
        while (_run(server, run_id)["last_step"] or 0) < 2:
            assert time.monotonic() < deadline, "the run never started"
            time.sleep(0.2)
        [pid] = _worker_pids(run_id)
        os.kill(pid, signal.SIGSTOP)
        try:
            _wait_status(server, run_id, "lost", within=TIMEOUT + 10)
            run = _run(server, run_id)
            assert run["error"].startswith("worker lost: nothing heard from its worker since")
            assert "Last log lines:" in run["error"] and "model ready on" in run["error"]
            step_when_lost = run["last_step"]
        finally:
            os.kill(pid, signal.SIGCONT)
        # Running again, it learns it was lost, stops at a checkpoint and exits; the run stays lost.
        deadline = time.monotonic() + 60
        while _worker_pids(run_id):
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                raise AssertionError("the lost worker kept training after it ran again")
            time.sleep(0.2)
        run = _run(server, run_id)
        assert run["status"] == "lost" and run["last_step"] >= step_when_lost
        log = (server.data_dir / "runs" / str(run_id) / "worker.log").read_text()
        assert "marked run" in log and "lost" in log and "saved checkpoint" in log


def test_a_quiet_worker_that_still_beats_stays_running(tmp_path: Path, tiny_dataset_file) -> None:  # type: ignore[no-untyped-def]
    """A long eval or checkpoint write sends nothing for a while; the reporter's own thread beats meanwhile."""
    for server in _serve(tmp_path, None, FAST):
        run_id, token = _register(server, tiny_dataset_file)
        reporter = StreamingReporter(server.url, run_id, token, spill_path=tmp_path / "spill.jsonl")
        reporter.status("running", total_steps=2)
        reporter.metrics(1, {"loss": 1.0})
        time.sleep(TIMEOUT * 2.5)  # nothing but heartbeats
        assert _run(server, run_id)["status"] == "running"
        reporter.metrics(2, {"loss": 0.5})
        reporter.status("completed")
        reporter.close(timeout=20)
        assert _run(server, run_id)["status"] == "completed"


def test_after_a_restart_a_run_whose_worker_is_gone_is_lost_and_one_whose_worker_returns_runs_on(tmp_path: Path, tiny_dataset_file) -> None:  # type: ignore[no-untyped-def]
    # Long enough for a worker to notice the restart (its reconnect backoff reaches 5 s) after the
    # silence it already had before it (up to two heartbeats of worker_timeout / 4).
    timeout = 15.0
    for server in _serve(tmp_path, None, {"ORPO_DASH_WORKER_TIMEOUT": str(timeout)}):
        gone, gone_token = _register(server, tiny_dataset_file)
        with connect(websocket_url(server.url, gone)) as ws:
            _hello(ws, gone_token)
            assert _send(ws, 1, points=[[1, "loss", 1.0, 0.0]], logs=[[0.0, "stderr", "last words"]])["type"] == "ack"
        back, back_token = _register(server, tiny_dataset_file)
        reporter = StreamingReporter(server.url, back, back_token, spill_path=tmp_path / "spill.jsonl")
        reporter.status("running", total_steps=3)
        reporter.metrics(1, {"loss": 1.0})
        assert reporter.connected.wait(10)

        server.kill()  # the dashboard dies; one worker is gone too, the other keeps retrying
        server.start()
        restarted = time.monotonic()
        _wait_status(server, gone, "lost", within=timeout + 5)
        assert time.monotonic() - restarted <= timeout + 5
        run = _run(server, gone)
        assert run["error"].endswith("Last log lines:\nlast words") and run["last_step"] == 1
        time.sleep(max(0.0, restarted + timeout + 3 - time.monotonic()))
        assert _run(server, back)["status"] == "running"  # heard again since the restart
        assert _run(server, back)["status"] == "running"
        reporter.metrics(2, {"loss": 0.5})
        reporter.status("completed")
        reporter.close(timeout=20)
        run = _run(server, back)
        assert run["status"] == "completed" and run["last_step"] == 2


def test_a_lost_worker_that_comes_back_is_told_so_and_its_points_are_kept(tmp_path: Path, tiny_dataset_file) -> None:  # type: ignore[no-untyped-def]
    for server in _serve(tmp_path, None, FAST):
        run_id, token = _register(server, tiny_dataset_file)
        with connect(websocket_url(server.url, run_id)) as ws:
            _hello(ws, token)
            assert _send(ws, 1, points=[[1, "loss", 1.0, 0.0]])["type"] == "ack"
        _wait_status(server, run_id, "lost", within=TIMEOUT + 10)

        with connect(websocket_url(server.url, run_id)) as ws:
            assert _hello(ws, token) == {"type": "welcome", "protocol": 1, "run_id": run_id, "acked_seq": 1,
                                         "heartbeat_seconds": TIMEOUT / 4}
            told = json.loads(ws.recv(timeout=5))
            assert told["type"] == "lost" and f"marked run {run_id} lost" in told["message"]
            assert _send(ws, 2, points=[[2, "loss", 0.5, 0.0]], status={"status": "running"}) == {"type": "ack", "seq": 2}
            assert _run(server, run_id)["status"] == "lost"  # its status reports change nothing
            assert _send(ws, 3, points=[[3, "loss", 0.4, 0.0]], status={"status": "stopped"}) == {"type": "ack", "seq": 3}
            # After its own end, its token writes nothing more.
            assert _send(ws, 4, points=[[4, "loss", 0.3, 0.0]])["code"] == "run_ended"
        run = _run(server, run_id)
        assert run["status"] == "lost" and run["last_step"] == 3


def test_a_worker_that_finished_while_the_dashboard_was_down_is_delivered_not_lost(tmp_path: Path, tiny_dataset_file) -> None:  # type: ignore[no-untyped-def]
    output_dir = tmp_path / "out"
    for server in _serve(tmp_path, None, FAST):
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
        time.sleep(TIMEOUT)  # silent for longer than the timeout: only the spill file tells what happened
        server.start()
        deadline = time.monotonic() + TIMEOUT + 10
        while (run := _run(server, run_id))["status"] == "running":
            assert time.monotonic() < deadline, "the restarted dashboard never settled the run"
            time.sleep(0.2)
        assert run["status"] == "completed" and run["last_step"] == 3 and run["error"] is None
        deadline = time.monotonic() + 10  # removed just after its last batch commits
        while spill.exists():
            assert time.monotonic() < deadline, "the delivered spill file was left behind"
            time.sleep(0.1)
        logs = [line["text"] for line in server.api("GET", f"/api/runs/{run_id}/logs").json()]
        assert logs == ["saved checkpoint out/checkpoint-3"]
