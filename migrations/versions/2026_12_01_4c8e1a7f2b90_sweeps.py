"""sweeps: a batch of runs made from one base config and swept fields; runs.sweep_id links a run to it

`sweeps` keeps what was posted (axes text, mode, count, random_seed, seeds) and how its runs are
launched (max_concurrent, stop_on_critical). `runs.sweep_id` is a plain indexed integer, not a foreign
key, like parent_run_id: a plain ADD COLUMN, no table rebuild on SQLite. Runs made before this
migration belong to no sweep (NULL).

Revision ID: 4c8e1a7f2b90
Revises: e3f9a7c2d5b8
Create Date: 2026-12-01 09:50:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "4c8e1a7f2b90"
down_revision = "e3f9a7c2d5b8"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sweeps",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("mode", sa.String(length=10), nullable=False),
        sa.Column("axes", sa.JSON(), nullable=False),
        sa.Column("fields", sa.JSON(), nullable=False),
        sa.Column("base_config", sa.JSON(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=True),
        sa.Column("random_seed", sa.Integer(), nullable=False),
        sa.Column("seeds", sa.Integer(), nullable=False),
        sa.Column("max_concurrent", sa.Integer(), nullable=False),
        sa.Column("stop_on_critical", sa.Boolean(), nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    op.add_column("runs", sa.Column("sweep_id", sa.Integer(), nullable=True))
    op.create_index("ix_runs_sweep_id", "runs", ["sweep_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_runs_sweep_id", table_name="runs")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("sweep_id")
    op.drop_table("sweeps")
