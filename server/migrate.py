"""Apply Alembic migrations programmatically (used by `orpo-dash serve`/`migrate` and tests)."""

from __future__ import annotations

from alembic import command
from alembic.config import Config

from server.assets import ALEMBIC_INI, MIGRATIONS_DIR


def alembic_config(database_url: str) -> Config:
    config = Config(str(ALEMBIC_INI))
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["url"] = database_url
    return config


def upgrade_to_head(database_url: str) -> None:
    if database_url.startswith("sqlite:///"):
        from pathlib import Path

        Path(database_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(database_url), "head")
