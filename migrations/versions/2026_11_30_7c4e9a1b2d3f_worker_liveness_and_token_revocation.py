"""runs: when the worker was last heard from, and when the run's worker token stopped writing

`last_seen_at` is the last time the dashboard heard from a run's worker (persisted every few seconds
from an in-memory map, not on every heartbeat); `watched_at` the last time a dashboard was listening
for it. A `running` run unheard for worker_timeout becomes `lost`, also across a dashboard restart
(the silence before it is watched_at - last_seen_at). `token_revoked_at` is set when the run ends: from then on its
worker token can no longer write points or change its status. Runs that had already ended get it too.

Revision ID: 7c4e9a1b2d3f
Revises: 7a3e9c1d2b4f
Create Date: 2026-11-30 19:30:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "7c4e9a1b2d3f"
down_revision = "7a3e9c1d2b4f"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch_op:
        batch_op.add_column(sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("watched_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("token_revoked_at", sa.DateTime(timezone=True), nullable=True))
    # Tokens of runs that ended before this migration still wrote to them: revoke them now.
    op.execute(
        "UPDATE runs SET token_revoked_at = COALESCE(finished_at, CURRENT_TIMESTAMP) "
        "WHERE status IN ('completed', 'failed', 'stopped')"
    )


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch_op:
        batch_op.drop_column("token_revoked_at")
        batch_op.drop_column("watched_at")
        batch_op.drop_column("last_seen_at")
