"""alerts: the statistics behind an alert's message, apart from it

`alerts.message` is now a plain sentence ("the log odds ratio has stayed near zero for the last 40
steps"); `alerts.details` holds the statistics behind it (Theil-Sen change, Mann-Kendall z, medians),
which the run page shows on a second, secondary line. Alerts stored before this migration keep their
old message (numbers included) and get an empty `details`.

Revision ID: e3f9a7c2d5b8
Revises: b7d2e4f6a8c1
Create Date: 2026-12-01 04:40:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "e3f9a7c2d5b8"
down_revision = "b7d2e4f6a8c1"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ADD COLUMN with a server default: no table rebuild on SQLite, existing rows read "".
    op.add_column("alerts", sa.Column("details", sa.Text(), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("alerts") as batch:
        batch.drop_column("details")
