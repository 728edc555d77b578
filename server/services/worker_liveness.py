"""Is a running run's worker still there? The rule: a `running` run whose worker has sent nothing (a
batch, a heartbeat, a hello) for more than worker_timeout of wall-clock time is `lost`.

Every worker message only stores a time in an in-memory map (`LastHeard.heard`); every few seconds
the database gets, per running run, when its worker was last heard from (`last_seen_at`), in one small
transaction (`persist`). A run whose worker was never heard from counts from when it started running
(or was created).

A restart changes nothing in the rule: the silence is the time since the last sign of life, the time
the dashboard was down included, and the runs it left `running` are judged as soon as it starts. A
worker that was alive all along but could not reach a dashboard that stayed down for longer than
worker_timeout is lost too; when it reconnects it is told so, and the points it still sends are kept.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from server.models import LogLine, Run

# The lost run's error ends with this many of its last log lines.
LOG_TAIL_LINES = 20


class LastHeard:
    """When each run's worker was last heard from (unix time), since this dashboard started.

    Written from the event loop on every worker message: a dict store, nothing next to reading the
    message."""

    def __init__(self) -> None:
        self._heard: dict[int, float] = {}

    def heard(self, run_id: int) -> None:
        self._heard[run_id] = time.time()

    def last(self, run_id: int) -> float | None:
        return self._heard.get(run_id)

    def snapshot(self) -> dict[int, float]:
        return dict(self._heard)


def persist(*, session: Session, heard: dict[int, float]) -> None:
    """Store when each running run's worker was last heard from (only ever forward)."""
    for run in session.scalars(select(Run).where(Run.id.in_(heard), Run.status == "running")):
        when = _as_datetime(heard[run.id])
        if run.last_seen_at is None or _aware(run.last_seen_at) < when:
            run.last_seen_at = when


@dataclass(frozen=True)
class SilentRun:
    run_id: int
    config: dict[str, Any]
    last_seen: datetime  # the last sign of life of its worker
    silence: float  # seconds since then, wall-clock, a dashboard's downtime included


def silent_runs(*, session: Session, last_heard: LastHeard, timeout: float, now: float | None = None) -> list[SilentRun]:
    """Running runs whose worker has been silent for more than `timeout` seconds. Queued runs are
    never silent: no worker was started for them yet."""
    now = time.time() if now is None else now
    silent = []
    for run in session.scalars(select(Run).where(Run.status == "running")):
        last_seen, silence = _silence(run, last_heard, now)
        if silence > timeout:
            # run.output_dir, not the config's: it is set only inside the output root (allowed_paths.py),
            # and that is where spill files are looked for.
            silent.append(SilentRun(run.id, {**run.config, "output_dir": run.output_dir}, last_seen, silence))
    return silent


def _silence(run: Run, last_heard: LastHeard, now: float) -> tuple[datetime, float]:
    """The worker's last sign of life and the seconds since: what this dashboard heard, else what was
    persisted (by this dashboard or one before it), else when the run started."""
    persisted = max(_aware(moment) for moment in (run.last_seen_at, run.started_at, run.created_at) if moment is not None)
    heard = last_heard.last(run.id)
    last_seen = _as_datetime(heard) if heard is not None and heard > persisted.timestamp() else persisted
    return last_seen, now - last_seen.timestamp()


def log_tail(*, session: Session, run_id: int, lines: int = LOG_TAIL_LINES) -> str:
    rows = session.scalars(select(LogLine.text).where(LogLine.run_id == run_id).order_by(LogLine.id.desc()).limit(lines))
    return "\n".join(reversed(list(rows)))


def _as_datetime(unix_time: float) -> datetime:
    return datetime.fromtimestamp(unix_time, tz=UTC)


def _aware(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes (stored as UTC); PostgreSQL aware ones.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
