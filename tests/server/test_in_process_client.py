"""The `client` fixture is the real app: migrated database, lifespan running, no worker launched."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from alembic.script import ScriptDirectory
from fastapi.testclient import TestClient

from server.launcher import NoLauncher
from server.migrate import alembic_config


def test_client_serves_the_app_on_a_migrated_database_with_its_lifespan_running(
        client: TestClient, data_dir: Path, tiny_dataset_file: Path) -> None:
    database = data_dir / "orpo-dash.sqlite3"
    head = ScriptDirectory.from_config(alembic_config(f"sqlite:///{database}")).get_current_head()
    with sqlite3.connect(database) as db:
        assert db.execute("SELECT version_num FROM alembic_version").fetchall() == [(head,)]
    state = client.app.state  # type: ignore[attr-defined]
    assert state.hub.loop is not None, "the lifespan did not run"
    assert isinstance(state.launcher, NoLauncher)

    # A write goes through the writer thread the lifespan started, into this test's own database.
    created = client.post("/api/runs", params={"launch": "false"}, json={"dataset": str(tiny_dataset_file)})
    assert created.status_code == 201, created.text
    assert [run["id"] for run in client.get("/api/runs").json()] == [created.json()["id"]]
    with sqlite3.connect(database) as db:
        assert db.execute("SELECT count(*) FROM runs").fetchone() == (1,)
