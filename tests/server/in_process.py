"""The dashboard app in this process, on a migrated database: for tests that check requests and responses
(the `client` fixture, tests/server/conftest.py) and for tests that need to reach inside it (block its
writer, insert points directly, page through rows in small pages). Workers, websockets from another
process, restarts and browsers use the real server (tests/conftest.py)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fastapi.testclient import TestClient

from server.app import create_app
from server.migrate import upgrade_to_head
from server.settings import Settings


@contextmanager
def in_process_client(tmp_path: Path, database_url: str | None = None) -> Iterator[TestClient]:
    """A client of the app; `database_url` defaults to a fresh SQLite file under tmp_path."""
    database_url = database_url or f"sqlite:///{tmp_path / 'dashboard.sqlite3'}"
    upgrade_to_head(database_url)
    # Tests keep models, datasets and outputs under the temporary directory: the allowed root for all three.
    temporary = Path(tempfile.gettempdir())
    app = create_app(Settings(data_dir=tmp_path, database_url=database_url, launch_workers=False,
                              data_roots=[temporary], model_roots=[temporary], output_root=temporary))
    # A Host the dashboard answers to (not TestClient's default "testserver": see server/web_security.py).
    with TestClient(app, base_url="http://127.0.0.1:8000") as client:  # `with`: runs the lifespan, which starts the writer
        yield client


def register_run(client: TestClient, dataset: Path, name: str) -> int:
    """A run for an external worker: no local worker is started and no files are checked."""
    response = client.post("/api/runs", params={"launch": "false"}, json={"dataset": str(dataset), "name": name})
    assert response.status_code == 201, response.text
    return int(response.json()["id"])
