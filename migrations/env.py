"""Alembic environment: URL from the dashboard settings (or `-x url=`), metadata from server.models."""

from __future__ import annotations

from alembic import context
from sqlalchemy import engine_from_config, pool

from server.models import Base
from server.settings import get_settings

config = context.config
target_metadata = Base.metadata


def _database_url() -> str:
    # Precedence: an explicit URL from the caller (server.migrate or `alembic -x url=...`), then settings.
    explicit = context.get_x_argument(as_dictionary=True).get("url") or config.attributes.get("url")
    return explicit or get_settings().resolved_database_url


def run_migrations_offline() -> None:
    context.configure(url=_database_url(), target_metadata=target_metadata, literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connectable = engine_from_config({"sqlalchemy.url": _database_url()}, prefix="sqlalchemy.", poolclass=pool.NullPool)
    with connectable.connect() as connection:
        # Batch mode lets ALTER-style migrations work on SQLite too.
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
