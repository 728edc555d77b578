"""The worker side of the protocol against a real server: every point arrives once, refusals are clear."""

from __future__ import annotations

import json

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from orpo_dash.metric_names import TRAIN_METRICS
from trainer.streaming import StreamingReporter, websocket_url


def _register(server, dataset, **config) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    response = server.api("POST", "/api/runs", params={"launch": "false"}, json={"dataset": str(dataset), **config})
    assert response.status_code == 201, response.text
    body = response.json()
    return body["id"], body["worker_token"]


def _stream_steps(reporter: StreamingReporter, steps: int) -> None:
    reporter.status("running", total_steps=steps)
    for step in range(1, steps + 1):
        reporter.metrics(step, {name: step * 0.01 + i for i, name in enumerate(TRAIN_METRICS)})
    reporter.status("completed")
    reporter.close(timeout=30)


def test_every_step_arrives_once_and_run_completes(live_server, tiny_dataset_file) -> None:  # type: ignore[no-untyped-def]
    run_id, token = _register(live_server, tiny_dataset_file)
    reporter = StreamingReporter(live_server.url, run_id, token)
    _stream_steps(reporter, 300)

    run = live_server.api("GET", f"/api/runs/{run_id}").json()
    assert run["status"] == "completed"
    assert run["last_step"] == 300
    series = live_server.api("GET", f"/api/runs/{run_id}/metrics", params={"max_points": 20000}).json()["series"]
    assert set(series) == set(TRAIN_METRICS)
    for i, name in enumerate(TRAIN_METRICS):
        assert series[name]["step"] == list(range(1, 301))
        assert series[name]["value"][-1] == pytest.approx(3.0 + i)


def test_downsampled_series_keeps_spikes(live_server, tiny_dataset_file) -> None:  # type: ignore[no-untyped-def]
    run_id, token = _register(live_server, tiny_dataset_file)
    reporter = StreamingReporter(live_server.url, run_id, token)
    for step in range(1, 5001):
        reporter.metrics(step, {"loss": 100.0 if step == 2345 else 1.0})
    reporter.close(timeout=30)
    body = live_server.api("GET", f"/api/runs/{run_id}/metrics", params={"names": "loss", "max_points": 200}).json()
    assert body["downsampled"] is True
    loss = body["series"]["loss"]
    assert len(loss["step"]) <= 200
    assert 100.0 in loss["value"] and 2345 in loss["step"]


def test_wrong_protocol_version_gets_a_clear_error(live_server, tiny_dataset_file) -> None:  # type: ignore[no-untyped-def]
    run_id, token = _register(live_server, tiny_dataset_file)
    with connect(websocket_url(live_server.url, run_id)) as ws:
        ws.send(json.dumps({"type": "hello", "protocol": 99, "token": token}))
        reply = json.loads(ws.recv(timeout=5))
    assert reply["code"] == "protocol_version"
    assert "protocol 1" in reply["message"] and "99" in reply["message"]


def test_a_worker_can_write_only_its_own_run(live_server, tiny_dataset_file, tmp_path) -> None:  # type: ignore[no-untyped-def]
    run_a, token_a = _register(live_server, tiny_dataset_file)
    run_b, _ = _register(live_server, tiny_dataset_file)
    assert token_a.startswith("odw_")  # never "-...", which a command line would read as an option
    spill = tmp_path / "spill.jsonl"
    reporter = StreamingReporter(live_server.url, run_b, token_a, spill_path=spill)
    reporter.metrics(1, {"loss": 1.0})
    reporter.close(timeout=10)
    assert reporter.refused and f"run {run_b}" in reporter.refused
    assert live_server.api("GET", f"/api/runs/{run_b}/metric-names").json() == []
    # The refused worker's point is not thrown away: it waits in the spill file.
    assert '"loss"' in spill.read_text()


def _hello(ws, token: str) -> dict:  # type: ignore[no-untyped-def]
    ws.send(json.dumps({"type": "hello", "protocol": 1, "token": token}))
    return json.loads(ws.recv(timeout=5))


def _send(ws, seq: int, **content) -> dict:  # type: ignore[no-untyped-def]
    ws.send(json.dumps({"type": "batch", "seq": seq, **content}))
    return json.loads(ws.recv(timeout=10))


@pytest.mark.parametrize("server_fixture", ["live_server", "live_server_postgres"])
def test_malformed_batches_are_refused_with_the_reason_and_the_stream_goes_on(request, server_fixture, tiny_dataset_file) -> None:  # type: ignore[no-untyped-def]
    server = request.getfixturevalue(server_fixture)
    run_id, token = _register(server, tiny_dataset_file)
    with connect(websocket_url(server.url, run_id)) as ws:
        assert _hello(ws, token)["acked_seq"] == 0
        # Each of these once made the database raise, and the worker waited for an ack that never came.
        refused = [
            _send(ws, 1, points=[[2**63, "loss", 1.0, 0.0]]),
            _send(ws, 2, points=[[1, "lo\u0000ss", 1.0, 0.0]]),
            _send(ws, 3, samples=[{"prompt": "p", "completion": "c"}]),
            _send(ws, 4, status={"status": "running", "total_steps": "many"}),
            _send(ws, 5, points=[[1, "x" * 5000, 1.0, 0.0]]),
        ]
        assert [r["code"] for r in refused] == ["bad_batch"] * 5 and [r["seq"] for r in refused] == [1, 2, 3, 4, 5]
        assert "integer from 0 to 2147483647" in refused[0]["message"]
        assert "without NUL" in refused[1]["message"]
        assert "sample's step" in refused[2]["message"]
        assert "total_steps must be an integer" in refused[3]["message"]
        assert len(refused[4]["message"]) < 300  # the 5,000-character name is not echoed back whole
        # NUL in free text (a model can generate one) is kept visible instead of failing the batch.
        ok = _send(ws, 6, points=[[1, "loss", 0.5, 0.0]], logs=[[0.0, "stdout", "a\u0000b"]],
                   samples=[{"step": 1, "prompt": "p\u0000", "completion": "c"}])
        assert ok == {"type": "ack", "seq": 6}
    assert server.api("GET", f"/api/runs/{run_id}").json()["last_step"] == 1
    assert [line["text"] for line in server.api("GET", f"/api/runs/{run_id}/logs").json()] == ["a\ufffdb"]
    assert server.api("GET", f"/api/runs/{run_id}/samples").json()[0]["prompt"] == "p\ufffd"


def test_a_batch_after_a_missing_one_is_not_applied_and_the_worker_resends_from_the_gap(live_server, tiny_dataset_file) -> None:  # type: ignore[no-untyped-def]
    run_id, token = _register(live_server, tiny_dataset_file)
    with connect(websocket_url(live_server.url, run_id)) as ws:
        _hello(ws, token)
        assert _send(ws, 1, points=[[1, "loss", 1.0, 0.0]]) == {"type": "ack", "seq": 1}
        # Batch 2 never committed (say the database dropped its connection): 3 must wait for it.
        ws.send(json.dumps({"type": "batch", "seq": 3, "points": [[3, "loss", 3.0, 0.0]]}))
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013
    with connect(websocket_url(live_server.url, run_id)) as ws:
        assert _hello(ws, token)["acked_seq"] == 1
        assert _send(ws, 2, points=[[2, "loss", 2.0, 0.0]]) == {"type": "ack", "seq": 2}
        assert _send(ws, 3, points=[[3, "loss", 3.0, 0.0]]) == {"type": "ack", "seq": 3}
    loss = live_server.api("GET", f"/api/runs/{run_id}/metrics", params={"names": "loss"}).json()["series"]["loss"]
    assert loss["step"] == [1, 2, 3]
