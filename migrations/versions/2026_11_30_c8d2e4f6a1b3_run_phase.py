"""runs: what the worker is doing now (its phase), as it last reported it

`phase` holds the latest {"name", "done", "total", "time"} a worker sent in a batch's "phase" key
(orpo_dash/protocol.py): evaluating batch 3/10, saving a checkpoint... NULL until a worker reports one
(workers that predate phases never do).

Revision ID: c8d2e4f6a1b3
Revises: 758e63c11579
Create Date: 2026-11-30 23:50:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "c8d2e4f6a1b3"
down_revision = "758e63c11579"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch_op:
        batch_op.add_column(sa.Column("phase", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch_op:
        batch_op.drop_column("phase")
