"""An alert's suggested config change is stored with it, shown in the API and the JSON export, and a run
started to apply it remembers the run and the alert it fixes (issue 16, points 4 and 5)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from orpo_dash import protocol
from orpo_dash.diagnostics.advice import apply_change
from tests.over_penalized import BETA, STEPS, over_penalized_metrics


def _register(client: TestClient, dataset: Path, **config: Any) -> tuple[int, str]:
    response = client.post("/api/runs", params={"launch": "false"}, json={"dataset": str(dataset), **config})
    assert response.status_code == 201, response.text
    return response.json()["id"], response.json()["worker_token"]


def _stream(client: TestClient, run_id: int, token: str) -> None:
    """The run's points through the worker websocket, one batch per step, each acknowledged."""
    with client.websocket_connect(f"/ws/worker/{run_id}", headers={"host": "127.0.0.1:8000"}) as ws:
        ws.send_json(protocol.hello(token))
        assert ws.receive_json()["type"] == "welcome"
        for step in range(1, STEPS + 1):
            points = [(step, name, value, 1000.0 + step) for name, value in over_penalized_metrics(step).items()]
            ws.send_json(protocol.batch(step, {"points": protocol.wire_points(points)}))
            while (reply := ws.receive_json())["type"] != "ack":
                pass
            assert reply["seq"] == step


def _over_penalized_run(client: TestClient, dataset: Path) -> tuple[int, dict[str, Any]]:
    run_id, token = _register(client, dataset, beta=BETA, name="beta ten")
    _stream(client, run_id, token)
    alerts = client.get(f"/api/runs/{run_id}/alerts").json()
    fixes = [a for a in alerts if a["kind"] == "over_penalization"]
    assert fixes, alerts
    return run_id, fixes[0]


def test_an_alerts_suggested_change_is_stored_shown_and_exported(client: TestClient, tiny_dataset_file: Path) -> None:
    run_id, alert = _over_penalized_run(client, tiny_dataset_file)
    assert alert["suggested_change"] == {"field": "beta", "from": 10.0, "to": 1.0}
    assert alert["advice"].startswith("beta is 10 (the paper uses 0.1)")
    assert client.get(f"/api/runs/{run_id}").json()["alerts"][0]["suggested_change"] == alert["suggested_change"]
    exported = client.get(f"/api/runs/{run_id}/export", params={"format": "json"}).json()
    assert [a["suggested_change"] for a in exported["alerts"]] == [alert["suggested_change"]]
    assert exported["run"]["parent_run_id"] is None


def test_a_run_cloned_with_the_fix_is_linked_to_its_parent_and_alert_until_they_are_deleted(
    client: TestClient, tiny_dataset_file: Path
) -> None:
    parent_id, alert = _over_penalized_run(client, tiny_dataset_file)
    parent = client.get(f"/api/runs/{parent_id}").json()
    config = {k: v for k, v in apply_change(parent["config"], alert["suggested_change"]).items() if k != "output_dir"}
    created = client.post("/api/runs", params={"launch": "false"},
                          json={**config, "parent_run_id": parent_id, "from_alert_id": alert["id"]})
    assert created.status_code == 201, created.text
    child = client.get(f"/api/runs/{created.json()['id']}").json()
    assert (child["parent_run_id"], child["from_alert_id"], child["config"]["beta"]) == (parent_id, alert["id"], 1.0)
    assert "parent_run_id" not in child["config"]  # lineage is about the run, not part of its config

    page = client.get(f"/runs/{child['id']}").text
    assert "cloned from run" in page.lower() and f'href="/runs/{parent_id}"' in page and "over penalization" in page
    assert f"/compare?runs={parent_id},{child['id']}" in page

    assert client.delete(f"/api/runs/{parent_id}").status_code == 204
    orphan = client.get(f"/api/runs/{child['id']}").json()
    assert (orphan["parent_run_id"], orphan["from_alert_id"]) == (None, None)


def test_lineage_that_does_not_hold_is_refused_naming_the_field(client: TestClient, tiny_dataset_file: Path) -> None:
    parent_id, alert = _over_penalized_run(client, tiny_dataset_file)
    other_id, _ = _register(client, tiny_dataset_file)
    cases = {
        "from_alert_id": {"from_alert_id": alert["id"]},  # no parent
        "parent_run_id": {"parent_run_id": 999_999},
    }
    cases_other = {"from_alert_id": {"parent_run_id": other_id, "from_alert_id": alert["id"]}}  # not that run's alert
    for field, lineage in [*cases.items(), *cases_other.items()]:
        response = client.post("/api/runs", params={"launch": "false"}, json={"dataset": str(tiny_dataset_file), **lineage})
        assert response.status_code == 422, response.text
        detail = response.json()["detail"]
        assert [d["loc"][-1] for d in detail] == [field], detail
        assert field in detail[0]["msg"]
