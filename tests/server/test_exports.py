"""Exports are streamed page by page and say exactly what the in-memory exports said; the server builds
the multi-run file the runs list downloads."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from server.models import MetricPoint, Run
from server.services import export as export_service
from server.services.metrics import insert_points
from tests.server.in_process import in_process_client, register_run


def _add_points(client: TestClient, run_id: int, steps: int) -> None:
    points = [(step, name, (math.nan if (step, name) == (3, "loss") else step / 7 + len(name)), 1000.0 + step)
              for step in range(steps) for name in ("loss", "accuracy", "λ/ratio")]
    points += [(step, "eval/loss", 0.5 + step, 2000.0 + step) for step in range(0, steps, 5)]

    def write(session: Session) -> None:
        insert_points(session=session, run_id=run_id, points=points)

    client.app.state.writer.submit(write).result(timeout=10)  # type: ignore[attr-defined]


def _in_memory_export(client: TestClient, run_id: int, format: str) -> str:
    """What the export route built before it streamed (its code, kept here as the reference)."""
    with client.app.state.session_factory() as session:  # type: ignore[attr-defined]
        run = session.get(Run, run_id)
        assert run is not None
        rows = session.execute(
            select(MetricPoint.step, MetricPoint.name, MetricPoint.value, MetricPoint.time)
            .where(MetricPoint.run_id == run_id)
            .order_by(MetricPoint.step, MetricPoint.name)
        ).all()
        if format == "json":
            return json.dumps({
                "run": {"id": run.id, "name": run.name, "status": run.status, "config": run.config,
                        "parent_run_id": None, "from_alert_id": None},
                "alerts": [],
                "points": [{"step": s, "name": n, "value": v, "time": t} for s, n, v, t in rows],
            })
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["step", "name", "value", "time"])
    writer.writerows(rows)
    return buffer.getvalue()


@pytest.fixture(params=["sqlite", "postgresql"])
def client(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    # PostgreSQL pages through a server-side cursor, SQLite through its own: both must join up the same.
    database_url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else None
    monkeypatch.setattr(export_service, "EXPORT_PAGE_ROWS", 7)  # many pages, one ending mid-step
    with in_process_client(tmp_path, database_url) as client:
        yield client


@pytest.mark.parametrize("format", ["csv", "json"])
def test_a_streamed_export_says_what_the_in_memory_one_did(client: TestClient, tiny_dataset_file: Path, format: str) -> None:
    run_id = register_run(client, tiny_dataset_file, "alpha λ")
    _add_points(client, run_id, steps=40)
    response = client.get(f"/api/runs/{run_id}/export", params={"format": format})
    assert response.status_code == 200
    assert response.headers.get("content-length") is None, "a streamed response has no length up front"
    assert response.text == _in_memory_export(client, run_id, format)
    assert response.text.count("eval/loss") == 8


@pytest.mark.parametrize("format", ["csv", "json"])
def test_an_export_of_a_run_without_points(client: TestClient, tiny_dataset_file: Path, format: str) -> None:
    run_id = register_run(client, tiny_dataset_file, "empty")
    response = client.get(f"/api/runs/{run_id}/export", params={"format": format})
    assert response.text == _in_memory_export(client, run_id, format)


def test_the_server_builds_one_csv_for_several_runs_in_the_order_asked(client: TestClient, tiny_dataset_file: Path) -> None:
    first = register_run(client, tiny_dataset_file, "first")
    second = register_run(client, tiny_dataset_file, "second")
    _add_points(client, first, steps=10)
    _add_points(client, second, steps=4)
    response = client.get("/api/export", params={"runs": f"{second},{first}", "format": "csv"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert f'filename="orpo-runs-{second}-{first}.csv"' in response.headers["content-disposition"]
    expected = [["run_id", "step", "name", "value", "time"]]
    for run_id in (second, first):
        single = list(csv.reader(io.StringIO(_in_memory_export(client, run_id, "csv"))))[1:]
        expected += [[str(run_id), *row] for row in single]
    assert list(csv.reader(io.StringIO(response.text))) == expected
    assert len(expected) == 1 + (10 * 3 + 2) + (4 * 3 + 1)


def test_the_server_builds_one_json_array_for_several_runs(client: TestClient, tiny_dataset_file: Path) -> None:
    first = register_run(client, tiny_dataset_file, "first")
    second = register_run(client, tiny_dataset_file, "second")
    _add_points(client, first, steps=9)
    response = client.get("/api/export", params={"runs": f"{first},{second}", "format": "json"})
    assert response.status_code == 200
    assert response.json() == [json.loads(_in_memory_export(client, run_id, "json")) for run_id in (first, second)]


def test_a_multi_run_export_names_what_is_wrong_with_its_runs(client: TestClient, tiny_dataset_file: Path) -> None:
    run_id = register_run(client, tiny_dataset_file, "only")
    bad = client.get("/api/export", params={"runs": "1,two"})
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["query", "runs"]
    assert "runs=1,2,3" in bad.json()["detail"][0]["msg"]
    missing = client.get("/api/export", params={"runs": f"{run_id},{run_id + 100}"})
    assert missing.status_code == 404
    assert f"run {run_id + 100} not found" in missing.json()["detail"]
