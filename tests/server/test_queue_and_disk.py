"""Issue 20: queue positions and planned steps, a worker's phase, checkpoint sizes, the data folder's
usage and deleting a run's checkpoints without deleting the run (in-process app, real SQLite, real files)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from orpo_dash.protocol import phase
from orpo_dash.run_config import RunConfig
from server.services.runs import planned_steps


def _launched(client: TestClient, model: Path, dataset: Path, **config: Any) -> dict:
    # The client's app starts no worker: a launched run stays queued.
    body = {"model": str(model), "dataset": str(dataset), "max_length": 64, "max_prompt_length": 32, **config}
    response = client.post("/api/runs", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def test_queued_runs_know_their_place_in_line_and_their_planned_steps(client, tiny_model_dir, tiny_dataset_file) -> None:  # type: ignore[no-untyped-def]
    first = _launched(client, tiny_model_dir, tiny_dataset_file, max_steps=7)
    second = _launched(client, tiny_model_dir, tiny_dataset_file, num_epochs=2, batch_size=2)
    third = _launched(client, tiny_model_dir, tiny_dataset_file, max_steps=3)
    assert [first["queue_position"], second["queue_position"], third["queue_position"]] == [1, 2, 3]
    pairs = len(tiny_dataset_file.read_text().splitlines())
    # max_steps when set; otherwise epochs x training pairs (after the eval split) / pairs per step.
    assert first["total_steps"] == 7
    expected = planned_steps(RunConfig(num_epochs=2, batch_size=2), pairs)
    assert second["total_steps"] == expected == -(-2 * (pairs - -(-pairs // 10)) // 2)
    # A run that leaves the line moves everyone behind it up, in the list and on its own.
    assert client.post(f"/api/runs/{first['id']}/stop").json()["queue_position"] is None
    listed = {run["id"]: run["queue_position"] for run in client.get("/api/runs").json()}
    assert listed == {first["id"]: None, second["id"]: 1, third["id"]: 2}
    assert client.get(f"/api/runs/{third['id']}").json()["queue_position"] == 2


def _worker(client: TestClient, run_id: int, token: str):  # type: ignore[no-untyped-def]
    # Absolute: the TestClient would otherwise send Host "testserver", which the dashboard refuses.
    ws = client.websocket_connect(f"ws://127.0.0.1:8000/ws/worker/{run_id}")
    ws.__enter__()
    ws.send_text(json.dumps({"type": "hello", "protocol": 1, "token": token}))
    assert ws.receive_json()["type"] == "welcome"
    return ws


def _batch(ws, seq: int, **content: Any) -> dict:  # type: ignore[no-untyped-def]
    ws.send_text(json.dumps({"type": "batch", "seq": seq, **content}))
    return ws.receive_json()


def test_a_worker_reports_its_phase_and_an_ended_run_shows_none(client, tiny_dataset_file) -> None:  # type: ignore[no-untyped-def]
    created = client.post("/api/runs", params={"launch": "false"}, json={"dataset": str(tiny_dataset_file)}).json()
    run_id = created["id"]
    ws = _worker(client, run_id, created["worker_token"])
    try:
        assert _batch(ws, 1, points=[[5, "loss", 1.0, time.time()]]) == {"type": "ack", "seq": 1}
        assert client.get(f"/api/runs/{run_id}").json()["phase"] is None  # an old worker never says
        now = time.time()
        assert _batch(ws, 2, phase=phase("evaluating", done=2, total=9, when=now))["type"] == "ack"
        assert client.get(f"/api/runs/{run_id}").json()["phase"] == {"name": "evaluating", "done": 2, "total": 9, "time": now}
        refused = _batch(ws, 3, phase={"name": "sleeping", "time": now})
        assert refused["code"] == "bad_batch" and "phase must be an object whose name is one of" in refused["message"]
        refused = _batch(ws, 4, phase=phase("saving checkpoint", done=-1, when=now))
        assert "phase's done must be an integer" in refused["message"]
        assert _batch(ws, 5, phase=phase("saving checkpoint", when=now), status={"status": "completed"})["type"] == "ack"
    finally:
        ws.__exit__(None, None, None)
    run = client.get(f"/api/runs/{run_id}").json()
    assert run["status"] == "completed" and run["phase"] is None


def _checkpoint(folder: Path, step: int, size: int) -> None:
    (folder / f"checkpoint-{step}").mkdir(parents=True)
    (folder / f"checkpoint-{step}" / "model.safetensors").write_bytes(b"\0" * size)


def test_checkpoint_sizes_storage_and_deleting_checkpoints_keeps_the_run(client, tiny_dataset_file, tmp_path) -> None:  # type: ignore[no-untyped-def]
    output = tmp_path / "out"
    created = client.post("/api/runs", params={"launch": "false"},
                          json={"dataset": str(tiny_dataset_file), "output_dir": str(output)}).json()
    run_id = created["id"]
    assert created["output_dir_exists"] is False and created["checkpoints"] == []  # never created: not shown
    _checkpoint(output, 1, 3000)
    _checkpoint(output, 2, 5000)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "precious.bin").write_bytes(b"keep")
    (output / "checkpoint-3").symlink_to(elsewhere)  # a link to a folder outside: never deleted through it
    (output / "metrics.jsonl").write_text("{}\n")  # not a checkpoint: stays
    run = client.get(f"/api/runs/{run_id}").json()
    assert run["output_dir_exists"] is True and run["checkpoint_bytes"] >= 8000
    storage = client.get("/api/storage").json()
    assert storage["checkpoint_bytes"] == run["checkpoint_bytes"] and storage["free_bytes"] > 0 and storage["data_bytes"] > 0

    busy = client.delete(f"/api/runs/{run_id}/checkpoints")
    assert busy.status_code == 409 and "stop it first" in busy.json()["detail"]
    ws = _worker(client, run_id, created["worker_token"])
    try:
        assert _batch(ws, 1, status={"status": "completed"})["type"] == "ack"
    finally:
        ws.__exit__(None, None, None)
    deleted = client.delete(f"/api/runs/{run_id}/checkpoints")
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["deleted"] == 2 and deleted.json()["freed_bytes"] >= 8000
    assert sorted(p.name for p in output.iterdir()) == ["checkpoint-3", "metrics.jsonl"]
    assert (elsewhere / "precious.bin").read_bytes() == b"keep"
    after = client.get(f"/api/runs/{run_id}").json()
    assert after["status"] == "completed" and after["checkpoint_bytes"] == len(b"keep")
    assert client.delete("/api/runs/999999/checkpoints").status_code == 404


def test_an_external_run_without_output_dir_gets_no_folder(client, tiny_dataset_file) -> None:  # type: ignore[no-untyped-def]
    run = client.post("/api/runs", params={"launch": "false"}, json={"dataset": str(tiny_dataset_file)}).json()
    assert run["output_dir"] is None and run["output_dir_exists"] is False
    assert client.delete(f"/api/runs/{run['id']}/checkpoints").status_code == 409  # still running
