"""metric_points: no foreign key to runs; the run's delete removes its points

Every stored point paid a check against `runs` (on PostgreSQL a trigger per row, which cost more than
the insert itself: benchmarks/ingest_throughput.py). Points are only written by the single writer
after it has locked their run's row, and `server.services.runs.delete_run` locks the run before it
deletes its points, so no point can outlive its run without the constraint.

Revision ID: 758e63c11579
Revises: 7c4e9a1b2d3f
Create Date: 2026-11-30 23:40:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "758e63c11579"
down_revision = "7c4e9a1b2d3f"
branch_labels = None
depends_on = None

_COLUMNS = "run_id, name, step, value, time"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for key in sa.inspect(op.get_bind()).get_foreign_keys("metric_points"):
            op.drop_constraint(key["name"], "metric_points", type_="foreignkey")
        return
    # SQLite cannot drop a constraint: rebuild the table (same WITHOUT ROWID primary key), points kept.
    _rebuild_sqlite(foreign_key="")


def downgrade() -> None:
    # Points whose run is gone would break the constraint being restored.
    op.execute("DELETE FROM metric_points WHERE run_id NOT IN (SELECT id FROM runs)")
    if op.get_bind().dialect.name == "postgresql":
        op.create_foreign_key("metric_points_run_id_fkey", "metric_points", "runs", ["run_id"], ["id"], ondelete="CASCADE")
        return
    _rebuild_sqlite(foreign_key=", FOREIGN KEY(run_id) REFERENCES runs (id) ON DELETE CASCADE")


def _rebuild_sqlite(*, foreign_key: str) -> None:
    op.execute(
        "CREATE TABLE metric_points_rebuilt (run_id INTEGER NOT NULL, name VARCHAR(200) NOT NULL, "
        "step INTEGER NOT NULL, value FLOAT, time FLOAT NOT NULL, PRIMARY KEY (run_id, name, step)"
        f"{foreign_key}) WITHOUT ROWID"
    )
    op.execute(f"INSERT INTO metric_points_rebuilt ({_COLUMNS}) SELECT {_COLUMNS} FROM metric_points")
    op.drop_table("metric_points")
    op.rename_table("metric_points_rebuilt", "metric_points")
