"""The run page's data request (`GET /api/runs/{id}/metrics`) is encoded by hand for speed; its body
must stay exactly MetricsResponse's shape, NaN as null, full resolution and downsampled alike."""

from __future__ import annotations

import math
from pathlib import Path

from fastapi.testclient import TestClient

from server.models import Run
from server.schemas import MetricsResponse
from server.services.metrics import insert_points
from server.services.rollups import RollupTracker


def test_metrics_body_is_the_documented_model(client: TestClient, tiny_dataset_file: Path) -> None:
    run_id = client.post("/api/runs", params={"launch": "false"}, json={"dataset": str(tiny_dataset_file)}).json()["id"]
    loss = {step: 1.0 / (step + 1) for step in range(5_000)}
    loss[4_321] = math.nan
    points = [(step, "loss", value, 1000.0 + step) for step, value in loss.items()] + [(0, "eval_loss", 0.25, 1000.0)]
    with client.app.state.session_factory() as session, session.begin():  # type: ignore[attr-defined]
        insert_points(session=session, run_id=run_id, points=points)
        RollupTracker().update(session=session, run_id=run_id, points=points)
        session.get(Run, run_id).latest_metrics = {"loss": loss[4_999], "eval_loss": 0.25}

    full = client.get(f"/api/runs/{run_id}/metrics", params={"max_points": 10_000})
    assert full.status_code == 200, full.text
    body = full.json()
    assert MetricsResponse.model_validate(body).model_dump() == body  # nothing more, nothing less
    assert body["downsampled"] is False and set(body["series"]) == {"loss", "eval_loss"}
    series = body["series"]["loss"]
    assert series["step"] == list(range(5_000)) and series["time"][10] == 1010.0
    assert series["value"][4_321] is None and series["value"][3] == 0.25

    small = client.get(f"/api/runs/{run_id}/metrics", params={"max_points": 500, "names": "loss"}).json()
    assert MetricsResponse.model_validate(small).model_dump() == small
    assert small["downsampled"] is True and 100 < len(small["series"]["loss"]["step"]) <= 500
    assert 4_321 in small["series"]["loss"]["step"]  # the NaN survives downsampling, as null
    assert small["series"]["loss"]["value"][small["series"]["loss"]["step"].index(4_321)] is None
