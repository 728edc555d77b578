"""alerts carry a suggested config change; a run remembers the run and alert it was cloned to fix

`alerts.suggested_change` is the one config change an alert's advice suggests, as JSON
({"field": "beta", "from": 10, "to": 1}), NULL when no config change is right (and for alerts stored
before this migration). `runs.parent_run_id` / `runs.from_alert_id` link a run started from
"Clone with this fix" to the run and the alert it fixes. They are plain integers, not foreign keys
(alerts already reference runs, and the cycle would leave the tables without a creation order):
deleting a run sets them to NULL in the runs that point at it (server/services/runs.py, delete_run).

Revision ID: b7d2e4f6a8c1
Revises: c8d2e4f6a1b3
Create Date: 2026-11-30 23:50:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "b7d2e4f6a8c1"
down_revision = "c8d2e4f6a1b3"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMNs (no table rebuild on SQLite, so no cascade risk to run data).
    op.add_column("alerts", sa.Column("suggested_change", sa.JSON(), nullable=True))
    op.add_column("runs", sa.Column("parent_run_id", sa.Integer(), nullable=True))
    op.add_column("runs", sa.Column("from_alert_id", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("from_alert_id")
        batch.drop_column("parent_run_id")
    with op.batch_alter_table("alerts") as batch:
        batch.drop_column("suggested_change")
