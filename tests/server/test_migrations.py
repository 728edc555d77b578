"""Alembic owns the schema: the same migrations build it on SQLite and PostgreSQL, matching the models."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from server.migrate import upgrade_to_head
from server.models import Base

TABLES = {"runs", "metric_points", "metric_rollups", "alerts", "log_lines", "samples", "alembic_version"}


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
