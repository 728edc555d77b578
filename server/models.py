"""ORM tables. Alembic migrations in migrations/ create and change them; the app never calls create_all."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class Run(Base):
    __tablename__ = "runs"
    # Never reuse a deleted run's id on SQLite: the id names the run's folder (runs/<id>/).
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20), index=True)  # orpo_dash.protocol.RUN_STATUSES
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    # Only a hash is stored: the token itself is handed to the worker once.
    worker_token_hash: Mapped[str] = mapped_column(String(64))
    # Set when the run ends: the token then writes nothing more (server/services/run_status.py).
    token_revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # When its worker was last heard from, persisted every few seconds while it runs
    # (server/services/worker_liveness.py).
    last_seen_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # No longer written: liveness counts wall-clock silence, a dashboard's downtime included, so when a
    # dashboard was last listening does not matter. Left in place rather than dropped by a migration.
    watched_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    total_steps: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_step: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Highest batch sequence number committed; a resent batch at or below it is acknowledged, not rewritten.
    last_seq: Mapped[int] = mapped_column(Integer, default=0)
    stop_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    output_dir: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Latest value of every metric, kept by ingestion so the runs list needs no per-run query.
    latest_metrics: Mapped[dict[str, float | None]] = mapped_column(JSON, default=dict)
    # What its worker last said it is doing ({"name", "done", "total", "time"}, orpo_dash.protocol.phase).
    phase: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # Who started the run: a user name (kept as text so it outlives the account); NULL when auth was off.
    created_by: Mapped[str | None] = mapped_column(String(100), nullable=True)
    # "Clone with this fix": the run and the alert this run was started to fix. Plain columns, not foreign
    # keys (alerts already reference runs: a cycle), set to NULL by delete_run when those go.
    parent_run_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    from_alert_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # The sweep that made this run (server/services/sweeps.py); a plain column like the two above.
    sweep_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)


class Sweep(Base):
    """A batch of runs made from one base config and a few swept fields (orpo_dash/sweep_spec.py).
    Its runs carry `runs.sweep_id`; what they are swept over is read back from their configs."""

    __tablename__ = "sweeps"
    __table_args__ = {"sqlite_autoincrement": True}  # /sweeps/<id> never names a deleted sweep's successor

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    mode: Mapped[str] = mapped_column(String(10))  # grid/random
    axes: Mapped[dict[str, str]] = mapped_column(JSON)  # field -> the axis text as posted
    fields: Mapped[list[str]] = mapped_column(JSON)  # the swept fields, in the posted order
    base_config: Mapped[dict[str, Any]] = mapped_column(JSON)
    count: Mapped[int | None] = mapped_column(Integer, nullable=True)  # random mode: settings sampled
    random_seed: Mapped[int] = mapped_column(Integer, default=0)
    seeds: Mapped[int] = mapped_column(Integer, default=1)
    max_concurrent: Mapped[int] = mapped_column(Integer, default=1)  # runs of this sweep running at once
    stop_on_critical: Mapped[bool] = mapped_column(Boolean, default=False)
    created_by: Mapped[str | None] = mapped_column(String(100), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


# A metric name in the points' and rollups' keys. PostgreSQL compares it bytewise ("C"), as SQLite does:
# under a locale every key comparison of an inserted point went through strcoll (migration 9d1f3b7c5e20).
METRIC_NAME = String(200).with_variant(String(200, collation="C"), "postgresql")


class MetricPoint(Base):
    __tablename__ = "metric_points"

    # No foreign key: checking one per point cost more than storing the point (a trigger per row on
    # PostgreSQL). Points are written only under their run's row lock, and delete_run takes that lock
    # before it deletes them (migrations/versions/..._metric_points_without_foreign_key.py).
    run_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(METRIC_NAME, primary_key=True)
    step: Mapped[int] = mapped_column(Integer, primary_key=True)
    # NULL stands for NaN: SQLite cannot store NaN (it turns it into NULL anyway).
    value: Mapped[float | None] = mapped_column(Float, nullable=True)
    time: Mapped[float] = mapped_column(Float)

    # On SQLite the primary key becomes the table's own B-tree (no separate rowid table + index),
    # which halves the work per inserted point and keeps each series contiguous for range reads.
    __table_args__ = {"sqlite_with_rowid": False}


class MetricRollup(Base):
    """Min/max/NaN summary of one bucket of steps at one level (server/services/rollups.py)."""

    __tablename__ = "metric_rollups"

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    name: Mapped[str] = mapped_column(METRIC_NAME, primary_key=True)
    level: Mapped[int] = mapped_column(Integer, primary_key=True)  # bucket width = 64 * 16**level steps
    bucket: Mapped[int] = mapped_column(Integer, primary_key=True)
    min_step: Mapped[int | None] = mapped_column(Integer, nullable=True)
    min_value: Mapped[float | None] = mapped_column(Float, nullable=True)
    min_time: Mapped[float | None] = mapped_column(Float, nullable=True)
    max_step: Mapped[int | None] = mapped_column(Integer, nullable=True)
    max_value: Mapped[float | None] = mapped_column(Float, nullable=True)
    max_time: Mapped[float | None] = mapped_column(Float, nullable=True)
    nan_step: Mapped[int | None] = mapped_column(Integer, nullable=True)
    nan_time: Mapped[float | None] = mapped_column(Float, nullable=True)

    __table_args__ = {"sqlite_with_rowid": False}


class AlertEngineState(Base):
    """A run's alert engine as JSON (AlertEngine.state()), saved with the batches it has seen, so a
    restart restores it and replays only the points committed after it (server/services/ingest.py)."""

    __tablename__ = "alert_engine_states"

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    state: Mapped[str] = mapped_column(Text)  # JSON text: the state holds Infinity/NaN, which JSON columns refuse
    saved_at: Mapped[float] = mapped_column(Float)


class Alert(Base):
    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(50))
    severity: Mapped[str] = mapped_column(String(20))
    onset_step: Mapped[int] = mapped_column(Integer)
    step: Mapped[int] = mapped_column(Integer)
    message: Mapped[str] = mapped_column(Text)  # a plain sentence
    details: Mapped[str] = mapped_column(Text, default="", server_default="")  # the statistics behind it
    advice: Mapped[str] = mapped_column(Text)
    # The config change the advice suggests: {"field", "from", "to"} (orpo_dash/diagnostics/advice.py), or NULL.
    suggested_change: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    state: Mapped[str] = mapped_column(String(10))  # open/closed
    closed_step: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class LogLine(Base):
    __tablename__ = "log_lines"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    time: Mapped[float] = mapped_column(Float)
    stream: Mapped[str] = mapped_column(String(20))
    text: Mapped[str] = mapped_column(Text)

    __table_args__ = (Index("ix_log_lines_run_id_id", "run_id", "id"),)


class Sample(Base):
    __tablename__ = "samples"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    step: Mapped[int] = mapped_column(Integer)
    prompt: Mapped[str] = mapped_column(Text)
    completion: Mapped[str] = mapped_column(Text)
    time: Mapped[float] = mapped_column(Float)

    __table_args__ = (Index("ix_samples_run_id_step", "run_id", "step"),)


class User(Base):
    """An account, used only when auth is on (server/auth.py)."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    password_hash: Mapped[str] = mapped_column(String(200))  # argon2id, with its salt and parameters
    role: Mapped[str] = mapped_column(String(10))  # viewer/member/admin
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ApiToken(Base):
    """A personal token for scripts (`Authorization: Bearer ...`); only its SHA-256 is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    label: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
