"""runs: ids are never handed out twice (SQLite AUTOINCREMENT)

SQLite gives a new row max(id) + 1, so deleting the newest run let the next one take its id, and
with it the dashboard's folder runs/<id>/ (the deleted run's checkpoints, worker log and any spill
file). AUTOINCREMENT keeps a high-water mark instead. PostgreSQL sequences never reuse ids already.

Revision ID: 5f1c2d3e4a6b
Revises: dba52529ca0a
Create Date: 2026-11-27 04:30:00
"""
from __future__ import annotations

from alembic import op

revision = "5f1c2d3e4a6b"
down_revision = "dba52529ca0a"
branch_labels = None
depends_on = None


def _rebuild_runs(autoincrement: bool) -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    # The rebuild drops and recreates `runs`; with foreign keys enforced that drop would cascade to
    # every run's metrics. Migrations connect without the server's pragmas, so they are off: make sure.
    if bind.exec_driver_sql("PRAGMA foreign_keys").scalar():
        raise RuntimeError("refusing to rebuild the runs table with PRAGMA foreign_keys=ON (it would cascade)")
    with op.batch_alter_table("runs", recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}):
        pass


def upgrade() -> None:
    _rebuild_runs(autoincrement=True)


def downgrade() -> None:
    _rebuild_runs(autoincrement=False)
