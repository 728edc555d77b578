"""Issue 14: runs never hang. A running run whose worker sends nothing for worker_timeout (here 5 s)
becomes `lost` with its last log lines in the error; after a dashboard restart the runs left running
are judged at once on the same rule, the downtime counted as silence; a worker that only goes quiet
(heartbeats) stays running; a lost worker that comes back is told so and its points are still kept."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from websockets.sync.client import connect

from server.models import Run
from server.services import run_status
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
        [pid] = _worker_pids(run_id, server.url)
        os.kill(pid, signal.SIGSTOP)
        try:
            _wait_status(server, run_id, "lost", within=TIMEOUT + 10)
            run = _run(server, run_id)
            assert run["error"].startswith("worker lost: nothing heard from its worker since")
            # The error ends with the worker's last log lines (per-step lines by now, so not its start-up).
            last_line = server.api("GET", f"/api/runs/{run_id}/logs").json()[-1]["text"]
            assert "Last log lines:" in run["error"] and run["error"].endswith(last_line)
            step_when_lost = run["last_step"]
        finally:
            os.kill(pid, signal.SIGCONT)
        # Running again, it learns it was lost, stops at a checkpoint and exits; the run stays lost.
        deadline = time.monotonic() + 60
        while _worker_pids(run_id, server.url):
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


def test_after_a_crash_and_restart_a_run_heard_just_before_runs_on(tmp_path: Path, tiny_dataset_file) -> None:  # type: ignore[no-untyped-def]
    """With the default worker_timeout (60 s) a dashboard that crashes and comes back loses no live run:
    its worker was heard seconds before, reconnects, and finishes."""
    for server in _serve(tmp_path, None):
        run_id, token = _register(server, tiny_dataset_file)
        reporter = StreamingReporter(server.url, run_id, token, spill_path=tmp_path / "spill.jsonl")
        reporter.status("running", total_steps=3)
        reporter.metrics(1, {"loss": 1.0})
        assert reporter.connected.wait(10)
        time.sleep(2)  # last heard (the hello and batch) 2 s before the crash

        server.kill()  # no shutdown hooks: what was persisted while it ran is all the next one knows
        server.start()
        time.sleep(1)  # the first check runs as the dashboard starts
        assert _run(server, run_id)["status"] == "running"
        reporter.metrics(2, {"loss": 0.5})
        reporter.status("completed")
        reporter.close(timeout=30)
        run = _run(server, run_id)
        assert run["status"] == "completed" and run["last_step"] == 2


def test_a_restarted_dashboard_counts_its_downtime_and_judges_the_runs_left_running_at_once(tmp_path: Path, tiny_dataset_file) -> None:  # type: ignore[no-untyped-def]
    """No grace window: silence is wall-clock time since the worker's last sign of life, the time the
    dashboard was down included, and the first check runs as the dashboard starts."""
    for server in _serve(tmp_path, None, FAST):
        run_id, token = _register(server, tiny_dataset_file)
        with connect(websocket_url(server.url, run_id)) as ws:
            _hello(ws, token)
            assert _send(ws, 1, points=[[1, "loss", 1.0, 0.0]], logs=[[0.0, "stderr", "last words"]])["type"] == "ack"
            server.kill()  # heard until the crash
        time.sleep(2 * TIMEOUT + 1)  # down for twice worker_timeout
        server.start()
        lost_after = _wait_status(server, run_id, "lost", within=3)
        run = _run(server, run_id)
        assert run["last_step"] == 1 and run["error"].endswith("Last log lines:\nlast words")
        # The whole downtime counted: the silence it reports is all the time from the worker's last sign of
        # life to the verdict, not only what the restarted dashboard saw.
        said = re.search(r"since (.{19}) UTC \((\d+) s ago, more than worker_timeout = (\S+) s\)", run["error"])
        assert said is not None, run["error"]
        last_seen = datetime.strptime(said[1], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
        wall_clock = (datetime.fromisoformat(run["finished_at"]) - last_seen).total_seconds()
        silence = int(said[2])
        assert silence >= 2 * TIMEOUT and abs(silence - wall_clock) <= 2 and float(said[3]) == TIMEOUT

        # Its worker may have been alive all along: reconnecting, it is told it was lost, and the points
        # it still sends up to its own end are kept.
        with connect(websocket_url(server.url, run_id)) as ws:
            assert _hello(ws, token)["type"] == "welcome"
            told = json.loads(ws.recv(timeout=5))
            assert told["type"] == "lost" and f"marked run {run_id} lost" in told["message"]
            assert _send(ws, 2, points=[[2, "loss", 0.8, 0.0]], status={"status": "stopped"}) == {"type": "ack", "seq": 2}
        run = _run(server, run_id)
        assert run["status"] == "lost" and run["last_step"] == 2
        print(f"lost {lost_after:.2f} s after the restarted dashboard answered, {silence} s after its worker's "
              f"last sign of life (worker_timeout {TIMEOUT:g} s)")


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


def test_a_run_another_dashboard_process_heard_from_recently_is_not_marked_lost(session_factory) -> None:  # type: ignore[no-untyped-def]
    """Two dashboards on one PostgreSQL: the one the worker does not stream to judges from the persisted
    last sign of life, re-read in the marking transaction (its own earlier read may be stale)."""
    factory = session_factory
    run_id = factory.run_id
    with factory() as session, session.begin():
        run = session.get(Run, run_id)
        run.status, run.started_at = "running", datetime.now(UTC) - timedelta(seconds=600)
    stale = datetime.now(UTC) - timedelta(seconds=600)

    def mark() -> bool:
        with factory() as session, session.begin():
            return run_status.mark_lost(session=session, run_id=run_id, last_seen=stale, silence=600, timeout=60, log_tail="")

    with factory() as session, session.begin():
        session.get(Run, run_id).last_seen_at = datetime.now(UTC) - timedelta(seconds=5)  # the other process's word
    assert mark() is False
    with factory() as session, session.begin():
        session.get(Run, run_id).last_seen_at = stale
    assert mark() is True
    with factory() as session:
        assert session.get(Run, run_id).status == "lost"
