"""Sweeps with auth on (a real dashboard, no workers): viewers read but change nothing, members stop only
the sweeps they started, and a cross-site POST is refused like one to the runs API."""

from __future__ import annotations

from contextlib import closing
from pathlib import Path

import httpx

from tests.accounts import login
from tests.conftest import LiveServer


def _body(dataset: Path) -> dict:  # type: ignore[type-arg]
    return {"name": "auth sweep", "config": {"dataset": str(dataset), "max_steps": 2}, "axes": {"beta": "0.1, 0.2"}}


def test_roles_and_owners_govern_sweeps(auth_server: LiveServer, tiny_dataset_file: Path) -> None:
    with closing(login(auth_server.url, "bob")) as bob, closing(login(auth_server.url, "dave")) as dave, \
            closing(login(auth_server.url, "carol")) as carol, closing(login(auth_server.url, "alice")) as alice:
        created = bob.post("/api/sweeps", json=_body(tiny_dataset_file))
        assert created.status_code == 201, created.text
        sweep_id = created.json()["id"]
        assert bob.get(f"/api/sweeps/{sweep_id}").json()["created_by"] == "bob"
        assert {run["created_by"] for run in bob.get("/api/runs", params={"sweep": sweep_id}).json()} == {"bob"}

        # A viewer reads, and is refused every change, preview included.
        assert carol.get(f"/api/sweeps/{sweep_id}").status_code == 200 and carol.get("/api/sweeps").status_code == 200
        for path in ("/api/sweeps", "/api/sweeps/preview", f"/api/sweeps/{sweep_id}/stop"):
            refused = carol.post(path, json=_body(tiny_dataset_file))
            assert refused.status_code == 403 and "viewer" in refused.json()["detail"], (path, refused.text)
        # Another member cannot stop bob's sweep; bob and an admin can.
        refused = dave.post(f"/api/sweeps/{sweep_id}/stop")
        assert refused.status_code == 403 and "bob" in refused.json()["detail"]
        assert alice.post(f"/api/sweeps/{sweep_id}/stop").json()["status_counts"] == {"stopped": 2}
        assert bob.post(f"/api/sweeps/{sweep_id}/stop").status_code == 200

        # Nobody logged in: 401. A session cookie sent from another site: refused before the route.
        assert httpx.get(auth_server.url + "/api/sweeps").status_code == 401
        cookies = dict(bob.cookies)
        foreign = httpx.post(auth_server.url + "/api/sweeps", json=_body(tiny_dataset_file), cookies=cookies,
                             headers={"Origin": "http://127.0.0.1:1"})
        assert foreign.status_code == 403
        assert len(alice.get("/api/sweeps").json()) == 1
