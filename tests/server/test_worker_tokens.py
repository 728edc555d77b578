"""Issue 14: a worker token writes only while its run is queued or running, a worker reports only its
progress and its own end, and statuses only move forward. What was committed before the run ended is
still acknowledged on a resend, so the exactly-once streaming survives the revocation."""

from __future__ import annotations

import json
import time

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from orpo_dash.protocol import CLOSE_RUN_ENDED
from tests.server.test_worker_stream import _hello, _register, _send
from trainer.streaming import StreamingReporter, websocket_url


def _closed_with(ws) -> int | None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConnectionClosed) as closed:
        ws.recv(timeout=10)
    return closed.value.rcvd.code if closed.value.rcvd is not None else None


def test_a_finished_runs_token_writes_nothing_but_its_committed_batches_are_still_acked(live_server, tiny_dataset_file) -> None:  # type: ignore[no-untyped-def]
    run_id, token = _register(live_server, tiny_dataset_file)
    with connect(websocket_url(live_server.url, run_id)) as ws:
        assert _hello(ws, token)["type"] == "welcome"
        assert _send(ws, 1, points=[[1, "loss", 1.0, 0.0]]) == {"type": "ack", "seq": 1}
        assert _send(ws, 2, points=[[2, "loss", 0.5, 0.0]], status={"status": "completed"}) == {"type": "ack", "seq": 2}
        # The final batch's ack was lost, say: its resend is acknowledged, not refused and not applied twice.
        assert _send(ws, 2, points=[[2, "loss", 0.5, 0.0]], status={"status": "completed"}) == {"type": "ack", "seq": 2}
        # Anything new is refused with the reason, and the socket closes with the documented code.
        refused = _send(ws, 3, points=[[3, "loss", 9.0, 0.0]], status={"status": "running"})
        assert refused["code"] == "run_ended" and refused["status"] == "completed" and refused["acked_seq"] == 2
        assert f"run {run_id} has ended (completed)" in refused["message"]
        assert _closed_with(ws) == CLOSE_RUN_ENDED

    # Reconnecting with the old token: no welcome, only what was committed and the same close code.
    with connect(websocket_url(live_server.url, run_id)) as ws:
        reply = _hello(ws, token)
        assert reply["type"] == "error" and reply["code"] == "run_ended" and reply["acked_seq"] == 2
        assert _closed_with(ws) == CLOSE_RUN_ENDED

    run = live_server.api("GET", f"/api/runs/{run_id}").json()
    assert run["status"] == "completed" and run["last_step"] == 2
    loss = live_server.api("GET", f"/api/runs/{run_id}/metrics", params={"names": "loss"}).json()["series"]["loss"]
    assert loss["step"] == [1, 2]


def test_a_streaming_worker_told_its_run_ended_drops_what_came_after_and_leaves_no_spill(live_server, tiny_dataset_file, tmp_path) -> None:  # type: ignore[no-untyped-def]
    run_id, token = _register(live_server, tiny_dataset_file)
    with connect(websocket_url(live_server.url, run_id)) as ws:
        _hello(ws, token)
        assert _send(ws, 1, status={"status": "stopped"}) == {"type": "ack", "seq": 1}
    spill = tmp_path / "spill.jsonl"
    reporter = StreamingReporter(live_server.url, run_id, token, spill_path=spill)
    reporter.metrics(5, {"loss": 1.0})
    reporter.status("running")
    reporter.close(timeout=15)
    assert reporter.refused and "has ended (stopped)" in reporter.refused
    assert reporter.dropped_batches >= 1 and not spill.exists()
    run = live_server.api("GET", f"/api/runs/{run_id}").json()
    assert run["status"] == "stopped" and run["last_step"] is None


@pytest.mark.parametrize("status", ["queued", "lost", "paused"])
def test_a_worker_cannot_set_a_status_other_than_its_progress_or_its_end(live_server, tiny_dataset_file, status) -> None:  # type: ignore[no-untyped-def]
    run_id, token = _register(live_server, tiny_dataset_file)
    with connect(websocket_url(live_server.url, run_id)) as ws:
        _hello(ws, token)
        refused = _send(ws, 1, points=[[1, "loss", 1.0, 0.0]], status={"status": status})
        assert refused["code"] == "bad_batch" and refused["seq"] == 1
        assert "running, completed, failed, stopped" in refused["message"] and repr(status) in refused["message"]
        # The refused batch counts as used; the stream goes on.
        assert _send(ws, 2, points=[[2, "loss", 1.0, 0.0]]) == {"type": "ack", "seq": 2}
    time.sleep(0.5)  # a relaunch, had `queued` gone through, would have claimed the run by now
    run = live_server.api("GET", f"/api/runs/{run_id}").json()
    assert run["status"] == "running" and run["last_step"] == 2


def test_an_ended_run_never_reopens_through_its_worker(live_server, tiny_dataset_file) -> None:  # type: ignore[no-untyped-def]
    """Resuming is a new run with resume_from; the old run's worker cannot turn `failed` back into `running`."""
    run_id, token = _register(live_server, tiny_dataset_file)
    with connect(websocket_url(live_server.url, run_id)) as ws:
        _hello(ws, token)
        assert _send(ws, 1, status={"status": "failed", "error": "boom"})["type"] == "ack"
        assert _send(ws, 2, status={"status": "running"})["code"] == "run_ended"
    run = live_server.api("GET", f"/api/runs/{run_id}").json()
    assert run["status"] == "failed" and run["error"] == "boom" and run["finished_at"] is not None


def test_a_token_from_another_run_is_still_refused_as_unauthorized(live_server, tiny_dataset_file) -> None:  # type: ignore[no-untyped-def]
    run_a, _ = _register(live_server, tiny_dataset_file)
    _, token_b = _register(live_server, tiny_dataset_file)
    with connect(websocket_url(live_server.url, run_a)) as ws:
        ws.send(json.dumps({"type": "hello", "protocol": 1, "token": token_b}))
        assert json.loads(ws.recv(timeout=5))["code"] == "unauthorized"
        assert _closed_with(ws) == 4401


def test_a_final_status_travels_only_after_every_point_queued_before_it(live_server, tiny_dataset_file, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """More points are waiting than one batch holds: the final status, which ends the run and its token,
    must not ride on the first batch, or the points after it would be refused."""
    run_id, token = _register(live_server, tiny_dataset_file)
    reporter = StreamingReporter(live_server.url, run_id, token, spill_path=tmp_path / "spill.jsonl")
    steps = 4000  # 20,000 points: four batches' worth, queued faster than the sender drains them
    for step in range(1, steps + 1):
        reporter.metrics(step, {"loss": 1.0, "accuracy": 0.5, "nll_loss": 1.0, "or_loss": 0.1, "log_odds_ratio": 0.2})
    reporter.status("completed")
    reporter.close(timeout=60)
    assert reporter.refused is None and reporter.dropped_batches == 0
    run = live_server.api("GET", f"/api/runs/{run_id}").json()
    assert run["status"] == "completed" and run["last_step"] == steps
