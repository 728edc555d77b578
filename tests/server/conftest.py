"""The dashboard app in this process, for tests that only check requests and responses.

A real `orpo-dash serve` subprocess (tests/conftest.py `live_server`) costs seconds to start; these tests
need no port, no worker and no second process, so they talk to `create_app` through Starlette's
`TestClient`. Keep `live_server` for what only a real process shows: workers, websockets from another
process, restarts and kills, browsers.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from orpo_dash.run_config import RunConfig
from server.db import make_engine, make_session_factory
from server.migrate import upgrade_to_head
from server.services import runs as run_service
from tests.server.in_process import in_process_client

SQLITE_NAME = "orpo-dash.sqlite3"


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty database brought to head by Alembic, as `orpo-dash serve` does; copied for each test
    because running the migrations takes about half a second."""
    path = tmp_path_factory.mktemp("migrated") / SQLITE_NAME
    upgrade_to_head(f"sqlite:///{path}")
    return path


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """The in-process dashboard's data folder (its SQLite file and `runs/`)."""
    folder = tmp_path / "dashboard"
    folder.mkdir()
    return folder


@pytest.fixture
def client(data_dir: Path, migrated_sqlite: Path) -> Iterator[TestClient]:
    """The dashboard app on a fresh migrated SQLite file, its lifespan (writer, reaper) running.

    No worker is ever launched: a run created without `launch=false` stays queued.
    """
    database = data_dir / SQLITE_NAME
    shutil.copyfile(migrated_sqlite, database)  # already at head: the upgrade in_process_client runs is a no-op
    with in_process_client(data_dir, f"sqlite:///{database}") as test_client:
        yield test_client


@pytest.fixture
def session_factory(tmp_path: Path, tiny_dataset_file: Path):  # type: ignore[no-untyped-def]
    """A migrated SQLite database holding one run (its id as .run_id), for tests of the services."""
    return database_with_one_run(f"sqlite:///{tmp_path / 'r.sqlite3'}", tmp_path, tiny_dataset_file)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_database_factory(request: pytest.FixtureRequest, tmp_path: Path, tiny_dataset_file: Path):  # type: ignore[no-untyped-def]
    """session_factory's database (one run, its id as .run_id) on SQLite, then on PostgreSQL."""
    url = f"sqlite:///{tmp_path / 'r.sqlite3'}" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    factory = database_with_one_run(url, tmp_path, tiny_dataset_file)
    yield factory
    factory.kw["bind"].dispose()  # before postgres_url drops the database


def database_with_one_run(url: str, tmp_path: Path, dataset: Path):  # type: ignore[no-untyped-def]
    upgrade_to_head(url)
    factory = make_session_factory(make_engine(url))
    with factory() as session, session.begin():
        run, _ = run_service.create_run(session=session, config=RunConfig(dataset=str(dataset)), name=None,
                                        runs_dir=tmp_path, output_root=tmp_path)
    factory.run_id = run.id  # type: ignore[attr-defined]
    return factory
