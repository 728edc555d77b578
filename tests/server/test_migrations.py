"""Alembic owns the schema: the same migrations build it on SQLite and PostgreSQL, matching the models."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from server.migrate import upgrade_to_head
from server.models import Base

TABLES = {
    "runs", "metric_points", "metric_rollups", "alerts", "alert_engine_states", "log_lines", "samples", "users",
    "api_tokens", "sweeps", "alembic_version",
}


def _assert_schema_matches_models(url: str) -> None:
    upgrade_to_head(url)
    engine = create_engine(url)
    try:
        assert set(inspect(engine).get_table_names()) == TABLES
        with engine.connect() as connection:
            diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
        assert diff == [], f"models and migrations disagree: {diff}"
    finally:
        engine.dispose()


def test_migrations_build_the_models_schema_on_sqlite(tmp_path: Path) -> None:
    _assert_schema_matches_models(f"sqlite:///{tmp_path / 'x.sqlite3'}")


@pytest.mark.postgres
def test_migrations_build_the_models_schema_on_postgres(postgres_url: str) -> None:
    _assert_schema_matches_models(postgres_url)


def test_upgrade_is_idempotent(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.sqlite3'}"
    upgrade_to_head(url)
    upgrade_to_head(url)


def test_a_deleted_runs_id_is_never_given_to_a_new_run_and_old_rows_survive_the_upgrade(tmp_path: Path) -> None:
    from alembic import command
    from sqlalchemy import text

    from server.migrate import alembic_config

    url = f"sqlite:///{tmp_path / 'x.sqlite3'}"
    command.upgrade(alembic_config(url), "dba52529ca0a")  # a database from before the change, with data
    engine = create_engine(url)
    insert_run = text("INSERT INTO runs (name, status, config, tags, worker_token_hash, created_at, last_seq, "
                      "stop_requested, latest_metrics) VALUES (:name, 'completed', '{}', '[]', 'h', '2026-11-26', 0, 0, '{}')")
    with engine.begin() as db:
        db.execute(insert_run, {"name": "a"})
        db.execute(insert_run, {"name": "b"})
        db.execute(text("INSERT INTO metric_points (run_id, name, step, value, time) VALUES (2, 'loss', 1, 0.5, 0)"))
    engine.dispose()

    upgrade_to_head(url)
    engine = create_engine(url)
    try:
        with engine.begin() as db:
            assert db.execute(text("SELECT id, name FROM runs ORDER BY id")).all() == [(1, "a"), (2, "b")]
            assert db.execute(text("SELECT run_id, value FROM metric_points")).all() == [(2, 0.5)]
            db.execute(text("DELETE FROM metric_points WHERE run_id = 2"))
            db.execute(text("DELETE FROM runs WHERE id = 2"))
            db.execute(insert_run, {"name": "c"})
            assert db.execute(text("SELECT id FROM runs WHERE name = 'c'")).scalar() == 3  # not 2 again
    finally:
        engine.dispose()


def test_a_new_run_never_inherits_the_folder_of_a_deleted_run_with_its_id(client, data_dir, tiny_dataset_file) -> None:  # type: ignore[no-untyped-def]
    first = client.post("/api/runs", params={"launch": "false"}, json={"dataset": str(tiny_dataset_file)}).json()
    # What a database from before ids stopped being reused can leave: the next id's folder, full.
    leftover = data_dir / "runs" / str(first["id"] + 1)
    (leftover / "checkpoints" / "checkpoint-5").mkdir(parents=True)
    (leftover / "checkpoints" / "checkpoint-5" / "model.safetensors").write_text("old weights")
    second = client.post("/api/runs", params={"launch": "false"}, json={"dataset": str(tiny_dataset_file)}).json()
    assert second["id"] == first["id"] + 1
    assert client.get(f"/api/runs/{second['id']}").json()["checkpoints"] == []
    kept = list((data_dir / "runs").glob(f"{second['id']}.deleted-run-*/checkpoints/checkpoint-5/model.safetensors"))
    assert [path.read_text() for path in kept] == ["old weights"]
    # Deleting the newest run no longer frees its id.
    assert client.delete(f"/api/runs/{second['id']}").status_code == 204
    third = client.post("/api/runs", params={"launch": "false"}, json={"dataset": str(tiny_dataset_file)}).json()
    assert third["id"] == second["id"] + 1


@pytest.mark.postgres
def test_metric_names_compare_bytewise_on_postgres_as_on_sqlite(postgres_url: str) -> None:
    # Under the database's locale each key comparison of an inserted point went through strcoll.
    upgrade_to_head(postgres_url)
    engine = create_engine(postgres_url)
    try:
        with engine.connect() as connection:
            rows = connection.exec_driver_sql(
                "SELECT table_name, collation_name FROM information_schema.columns "
                "WHERE column_name = 'name' AND table_name IN ('metric_points', 'metric_rollups')"
            ).all()
    finally:
        engine.dispose()
    assert sorted(rows) == [("metric_points", "C"), ("metric_rollups", "C")]
