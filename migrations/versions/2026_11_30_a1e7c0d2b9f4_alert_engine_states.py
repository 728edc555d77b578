"""alert_engine_states: each run's alert-engine state, so a restart restores it instead of replaying history

Revision ID: a1e7c0d2b9f4
Revises: 5f1c2d3e4a6b
Create Date: 2026-11-30 19:30:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "a1e7c0d2b9f4"
down_revision = "5f1c2d3e4a6b"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alert_engine_states",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("saved_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id"),
    )


def downgrade() -> None:
    op.drop_table("alert_engine_states")
