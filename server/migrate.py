"""Apply Alembic migrations programmatically (used by `orpo-dash serve`/`migrate` and tests)."""

from __future__ import annotations

from alembic import command
from alembic.config import Config

from server.settings import REPO_ROOT


def alembic_config(database_url: str) -> Config:
    config = Config(str(REPO_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(REPO_ROOT / "migrations"))
    config.attributes["url"] = database_url
    return config


def upgrade_to_head(database_url: str) -> None:
    if database_url.startswith("sqlite:///"):
        from pathlib import Path

        Path(database_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(database_url), "head")
