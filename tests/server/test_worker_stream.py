"""The worker side of the protocol against a real server: every point arrives once, refusals are clear."""

from __future__ import annotations

import json

import pytest
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
