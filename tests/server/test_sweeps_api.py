"""Sweeps through the API, no workers (in-process app, real SQLite): create, preview and its estimate,
422s that name the field and create nothing, the list, a sweep's runs with their results and per-setting
mean/std, the runs list filtered by sweep, stopping queued runs together, and the per-sweep launch limit
where queued runs are claimed."""

from __future__ import annotations

import json
import math
import statistics
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from server.models import Run
from server.services import run_status
from server.services import runs as run_service


def _body(dataset: Path, **overrides: Any) -> dict[str, Any]:
    return {"name": "beta sweep", "config": {"dataset": str(dataset), "max_steps": 5},
            "axes": {"beta": "0.05, 0.1", "learning_rate": "log 5e-6..5e-5, 2 values"}, "seeds": 2, **overrides}


def _fields(response: Any) -> dict[str, str]:
    assert response.status_code == 422, response.text
    return {error["loc"][-1]: error["msg"] for error in response.json()["detail"]}


def test_a_grid_sweep_makes_queued_runs_named_tagged_and_linked(client: TestClient, tiny_dataset_file: Path) -> None:
    created = client.post("/api/sweeps", json=_body(tiny_dataset_file))
    assert created.status_code == 201, created.text
    sweep = created.json()
    assert sweep["run_count"] == 8 == len(sweep["run_ids"]) and sweep["url"] == f"/sweeps/{sweep['id']}"
    assert sweep["estimated_seconds"] is None  # nothing of this model has completed here
    runs = client.get("/api/runs", params={"sweep": sweep["id"]}).json()
    assert sorted(run["id"] for run in runs) == sweep["run_ids"]
    first = min(runs, key=lambda run: run["id"])
    assert first["name"] == "beta sweep · beta=0.05 lr=5e-06 seed=42" and first["tags"] == [f"sweep:{sweep['id']}"]
    assert first["status"] == "queued" and first["sweep_id"] == sweep["id"] and first["config"]["max_steps"] == 5
    assert {(run["config"]["beta"], run["config"]["learning_rate"], run["config"]["seed"]) for run in runs} == {
        (beta, lr, seed) for beta in (0.05, 0.1) for lr in (5e-6, 5e-5) for seed in (42, 43)}
    # A run started on its own carries sweep_id null, and is not in the sweep's list.
    alone = client.post("/api/runs", json={"dataset": str(tiny_dataset_file)}).json()
    assert alone["sweep_id"] is None
    assert alone["id"] not in [run["id"] for run in client.get("/api/runs", params={"sweep": sweep["id"]}).json()]
    assert client.get("/api/runs", params={"sweep": 999}).json() == []
    listed = client.get("/api/sweeps").json()
    assert listed == [{"id": sweep["id"], "name": "beta sweep", "created_at": listed[0]["created_at"], "run_count": 8,
                       "status_counts": {"queued": 8}}]


def test_preview_counts_runs_and_lists_settings_without_creating_anything(client: TestClient, tiny_dataset_file: Path) -> None:
    preview = client.post("/api/sweeps/preview", json=_body(tiny_dataset_file))
    assert preview.status_code == 200, preview.text
    body = preview.json()
    assert body["run_count"] == 8 and len(body["settings"]) == 4
    assert body["settings"][0] == {"beta": 0.05, "learning_rate": 5e-06}
    assert body["estimated_seconds"] is None and "no completed run of" in body["estimate_basis"]
    random = client.post("/api/sweeps/preview", json=_body(tiny_dataset_file, mode="random", count=5, random_seed=7,
                                                            axes={"beta": "0.05..0.5"}))
    assert random.json()["run_count"] == 10
    again = client.post("/api/sweeps/preview", json=_body(tiny_dataset_file, mode="random", count=5, random_seed=7,
                                                           axes={"beta": "0.05..0.5"}))
    assert again.json()["settings"] == random.json()["settings"]
    assert client.get("/api/sweeps").json() == [] and client.get("/api/runs").json() == []


def _complete(client: TestClient, run_id: int, seconds: float, steps: int) -> None:
    """Mark a run completed after `steps` steps in `seconds`, as its worker and launcher would have."""
    def write(session: Session) -> None:
        run = session.get(Run, run_id)
        assert run is not None
        run_status.mark_running(run)
        assert run.started_at is not None
        run.last_step = steps
        run_status.apply_reported(run, new_status="completed", total_steps=steps, error=None)
        run.finished_at = run.started_at + timedelta(seconds=seconds)

    client.app.state.writer.write(write)  # type: ignore[attr-defined]


def test_the_estimate_comes_from_completed_runs_of_the_same_model(client: TestClient, tiny_dataset_file: Path) -> None:
    same = [client.post("/api/runs", json={"dataset": str(tiny_dataset_file), "max_steps": 10}).json()["id"] for _ in range(3)]
    other = client.post("/api/runs", json={"dataset": str(tiny_dataset_file), "model": "org/other", "max_steps": 10}).json()
    for run_id, seconds in zip(same, (10.0, 20.0, 90.0), strict=True):
        _complete(client, run_id, seconds, 10)  # 1, 2 and 9 s per step: median 2
    _complete(client, other["id"], 1000.0, 10)  # another model: not counted
    preview = client.post("/api/sweeps/preview", json=_body(tiny_dataset_file)).json()
    # 8 runs x 5 steps x 2 s, one at a time.
    assert preview["estimated_seconds"] == pytest.approx(80.0)
    assert "median of 3 completed run(s)" in preview["estimate_basis"] and "40 steps" in preview["estimate_basis"]
    two_at_once = client.post("/api/sweeps/preview", json=_body(tiny_dataset_file, max_concurrent=2)).json()
    parallel = min(2, client.app.state.settings.max_concurrent_runs)  # type: ignore[attr-defined]
    assert two_at_once["estimated_seconds"] == pytest.approx(80.0 / parallel)
    created = client.post("/api/sweeps", json=_body(tiny_dataset_file)).json()
    assert created["estimated_seconds"] == pytest.approx(80.0)
    # Bounded by epochs, over a dataset the server can count: planned steps from its rows.
    by_epochs = _body(tiny_dataset_file, config={"dataset": str(tiny_dataset_file), "num_epochs": 1, "batch_size": 2})
    assert client.post("/api/sweeps/preview", json=by_epochs).json()["estimated_seconds"] > 0


@pytest.mark.parametrize(("change", "field", "words"), [
    ({"axes": {"beta": "0, 0.1"}}, "axes.beta", "beta must be greater than 0"),
    ({"axes": {"beta": "0.1..0.5"}}, "axes.beta", "how many values"),
    ({"axes": {"lora": "1, 2"}}, "axes.lora", "not a numeric field"),
    ({"axes": {"seed": "1, 2"}}, "axes.seed", "use seeds"),
    ({"axes": {}}, "axes", "at least one axis"),
    ({"mode": "random"}, "count", "random mode needs count"),
    ({"count": 0, "mode": "random"}, "count", "count must be at least 1"),
    ({"mode": "spiral"}, "mode", "mode must be one of"),
    ({"seeds": 0}, "seeds", "seeds must be at least 1"),
    ({"max_concurrent": 0}, "max_concurrent", "max_concurrent must be at least 1"),
    ({"axes": {"beta": "0.01..1, 200 values", "learning_rate": "1e-6..1e-5, 3 values"}}, "axes", "at most 500"),
    ({"config": {"max_length": 0}}, "config.max_length", "max_length must be greater than 0"),
    ({"config": {"datset": "x"}}, "config.datset", "did you mean 'dataset'"),
    ({"config": {"dataset": "/no/such/file.jsonl"}}, "config.dataset", "dataset must be inside"),
    ({"colour": "red"}, "colour", "unknown field"),
])
def test_a_bad_sweep_is_a_422_naming_the_field_and_nothing_is_created(
    client: TestClient, tiny_dataset_file: Path, change: dict[str, Any], field: str, words: str,
) -> None:
    body = {**_body(tiny_dataset_file), **change}
    if "config" in change and "dataset" not in change["config"]:
        body["config"] = {"dataset": str(tiny_dataset_file), **change["config"]}
    for path in ("/api/sweeps", "/api/sweeps/preview"):
        errors = _fields(client.post(path, json=body))
        assert field in errors and words in errors[field], errors
    assert client.get("/api/sweeps").json() == [] and client.get("/api/runs").json() == []


def _worker(client: TestClient, run_id: int) -> Any:
    def rotate(session: Session) -> str:
        run = session.get(Run, run_id)
        assert run is not None
        return run_service.rotate_worker_token(run)

    token = client.app.state.writer.write(rotate)  # type: ignore[attr-defined]
    ws = client.websocket_connect(f"ws://127.0.0.1:8000/ws/worker/{run_id}")
    ws.__enter__()
    ws.send_text(json.dumps({"type": "hello", "protocol": 1, "token": token}))
    assert ws.receive_json()["type"] == "welcome"
    return ws


def _stream(client: TestClient, run_id: int, eval_losses: list[float | None], accuracy: float) -> None:
    """A worker's batches: eval/loss at steps 1, 2, ... (None is NaN), eval/accuracy, then completed."""
    ws = _worker(client, run_id)
    try:
        now = time.time()
        points = [[step, "eval/loss", value, now] for step, value in enumerate(eval_losses, start=1)]
        points += [[len(eval_losses), "eval/accuracy", accuracy, now], [len(eval_losses), "loss", 1.0, now]]
        ws.send_text(json.dumps({"type": "batch", "seq": 1, "points": points, "status": {"status": "completed"}}))
        assert ws.receive_json() == {"type": "ack", "seq": 1}
    finally:
        ws.__exit__(None, None, None)


def test_a_sweeps_runs_carry_final_and_best_metrics_and_settings_mean_and_std(client: TestClient, tiny_dataset_file: Path) -> None:
    body = _body(tiny_dataset_file, axes={"beta": "0.1, 0.5"}, seeds=3)
    sweep_id = client.post("/api/sweeps", json=body).json()["id"]
    runs = sorted(run["id"] for run in client.get("/api/runs", params={"sweep": sweep_id}).json())
    finals = {runs[0]: [3.0, 2.0, 2.5], runs[1]: [3.0, 1.0, 1.5], runs[2]: [2.0, 4.0],  # beta 0.1: 2.5, 1.5, 4.0
              runs[3]: [2.0, 1.0], runs[4]: [1.0, 3.0]}  # beta 0.5: 1.0, 3.0, and one never streamed
    for index, run_id in enumerate(runs[:5]):
        _stream(client, run_id, finals[run_id], accuracy=0.5 + index / 10)
    sweep = client.get(f"/api/sweeps/{sweep_id}").json()
    assert sweep["fields"] == ["beta"] and sweep["axes"] == {"beta": "0.1, 0.5"} and sweep["seeds"] == 3
    assert sweep["metrics"] == ["eval/loss", "eval/accuracy", "eval/log_odds_ratio"]
    assert sweep["status_counts"] == {"completed": 5, "queued": 1}
    by_id = {run["id"]: run for run in sweep["runs"]}
    first = by_id[runs[0]]
    assert first["values"] == {"beta": 0.1} and first["seed"] == 42 and by_id[runs[2]]["seed"] == 44
    assert first["final"] == {"eval/loss": 2.5, "eval/accuracy": 0.5, "eval/log_odds_ratio": None}
    assert first["best"] == {"eval/loss": 2.0, "eval/accuracy": 0.5, "eval/log_odds_ratio": None}  # lowest loss
    assert by_id[runs[2]]["best"]["eval/loss"] == 2.0 and by_id[runs[2]]["final"]["eval/loss"] == 4.0
    assert by_id[runs[5]]["final"]["eval/loss"] is None and by_id[runs[5]]["status"] == "queued"
    low, high = sweep["settings"]
    assert low["values"] == {"beta": 0.1} and low["run_ids"] == runs[:3] and low["n"] == 3
    assert low["mean"]["eval/loss"] == pytest.approx(statistics.fmean([2.5, 1.5, 4.0]))
    assert low["std"]["eval/loss"] == pytest.approx(statistics.stdev([2.5, 1.5, 4.0]))
    assert low["mean"]["eval/accuracy"] == pytest.approx(0.6) and low["mean"]["eval/log_odds_ratio"] is None
    # Only the runs that have the metric count: the queued run adds nothing.
    assert high["n"] == 3 and high["mean"]["eval/loss"] == pytest.approx(2.0)
    assert high["std"]["eval/loss"] == pytest.approx(math.sqrt(2))
    assert all(run["alerts"] == 0 and run["critical_alerts"] == 0 for run in sweep["runs"])
    assert client.get("/api/sweeps/999").status_code == 404


def test_stopping_a_sweep_stops_its_queued_runs_together_and_leaves_others(client: TestClient, tiny_dataset_file: Path) -> None:
    sweep = client.post("/api/sweeps", json=_body(tiny_dataset_file)).json()
    alone = client.post("/api/runs", json={"dataset": str(tiny_dataset_file)}).json()
    stopped = client.post(f"/api/sweeps/{sweep['id']}/stop")
    assert stopped.status_code == 200, stopped.text
    assert stopped.json()["status_counts"] == {"stopped": 8}
    assert all(run["started_at"] is None for run in client.get("/api/runs", params={"sweep": sweep["id"]}).json())
    assert client.get(f"/api/runs/{alone['id']}").json()["status"] == "queued"
    assert client.post("/api/sweeps/999/stop").status_code == 404


def test_claiming_queued_runs_holds_each_sweep_to_its_max_concurrent(client: TestClient, tiny_dataset_file: Path) -> None:
    one = client.post("/api/sweeps", json=_body(tiny_dataset_file, max_concurrent=1)).json()["run_ids"]
    two = client.post("/api/sweeps", json=_body(tiny_dataset_file, max_concurrent=2)).json()["run_ids"]
    alone = [client.post("/api/runs", json={"dataset": str(tiny_dataset_file)}).json()["id"] for _ in range(2)]

    def claim(limit: int) -> list[int]:
        def write(session: Session) -> list[int]:
            claimed = run_service.claim_queued_runs(session=session, limit=limit)
            for run in claimed:
                run_status.mark_running(run)
            return [run.id for run in claimed]
        return list(client.app.state.writer.write(write))  # type: ignore[attr-defined]

    # One of the first sweep, two of the second, then the runs of no sweep: oldest first within the limits.
    assert claim(10) == [one[0], two[0], two[1], *alone]
    assert claim(10) == []  # both sweeps are at their limit
    _complete_running(client, one[0])
    assert claim(10) == [one[1]]
    _complete_running(client, two[0])
    assert claim(1) == [two[2]]


def _complete_running(client: TestClient, run_id: int) -> None:
    def write(session: Session) -> None:
        run = session.get(Run, run_id)
        assert run is not None
        run_status.apply_reported(run, new_status="completed", total_steps=None, error=None)

    client.app.state.writer.write(write)  # type: ignore[attr-defined]


def test_compare_takes_a_sweep_and_shows_its_runs(client: TestClient, tiny_dataset_file: Path) -> None:
    sweep = client.post("/api/sweeps", json=_body(tiny_dataset_file, seeds=1)).json()
    other = client.post("/api/runs", json={"dataset": str(tiny_dataset_file)}).json()["id"]
    page = client.get("/compare", params={"sweep": sweep["id"]})
    assert page.status_code == 200
    assert f'data-run-ids="{",".join(map(str, sweep["run_ids"]))}"' in page.text
    both = client.get("/compare", params={"sweep": sweep["id"], "runs": str(other)})
    assert f'data-run-ids="{",".join(map(str, [*sweep["run_ids"], other]))}"' in both.text
    for bad in ("999", "x"):
        missing = client.get("/compare", params={"sweep": bad})
        assert missing.status_code == 404 and "no sweep with id" in missing.text
