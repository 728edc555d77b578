"""Is a running run's worker still there? The rule: a `running` run whose worker has sent nothing (a
batch, a heartbeat, a hello) for worker_timeout while a dashboard was listening is `lost`.

Every worker message only stores a time in an in-memory map (`LastHeard.heard`); every few seconds
the database gets, per running run, when its worker was last heard from (`last_seen_at`) and when
this dashboard was last listening (`watched_at`), in one small transaction (`persist`).

After a restart the clock goes on from there: a run's worker had been silent for
watched_at - last_seen_at when the previous dashboard stopped, and the silence counts on from this
dashboard's start. The time the dashboard itself was down does not count: no worker can be heard
then, and a worker reconnects within seconds of the dashboard coming back.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from server.models import LogLine, Run

# The lost run's error ends with this many of its last log lines.
LOG_TAIL_LINES = 20


class LastHeard:
    """When each run's worker was last heard from (unix time), since this dashboard started.

    Written from the event loop on every worker message: a dict store, nothing next to reading the
    message. `started` is when this dashboard began listening."""

    def __init__(self) -> None:
        self.started = time.time()
        self._heard: dict[int, float] = {}

    def heard(self, run_id: int) -> None:
        self._heard[run_id] = time.time()

    def last(self, run_id: int) -> float | None:
        return self._heard.get(run_id)

    def snapshot(self) -> dict[int, float]:
        return dict(self._heard)


def persist(*, session: Session, heard: dict[int, float], now: float | None = None) -> None:
    """Store when each running run's worker was last heard from (only ever forward), and that this
    dashboard was listening for every running run until `now`."""
    now_at = _as_datetime(time.time() if now is None else now)
    for run in session.scalars(select(Run).where(Run.id.in_(heard), Run.status == "running")):
        when = _as_datetime(heard[run.id])
        if run.last_seen_at is None or _aware(run.last_seen_at) < when:
            run.last_seen_at = when
    session.execute(update(Run).where(Run.status == "running").values(watched_at=now_at))


@dataclass(frozen=True)
class SilentRun:
    run_id: int
    config: dict[str, Any]
    last_seen: datetime  # the last sign of life of its worker
    silence: float  # seconds of it that a dashboard was listening for


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
    persisted = max(_aware(moment) for moment in (run.last_seen_at, run.started_at, run.created_at) if moment is not None)
    heard = last_heard.last(run.id)
    if heard is not None and heard >= persisted.timestamp():
        return _as_datetime(heard), now - heard
    if persisted.timestamp() >= last_heard.started:
        return persisted, now - persisted.timestamp()  # started under this dashboard
    # Active under a previous dashboard: its silence then, and since this one started.
    watched = _aware(run.watched_at).timestamp() if run.watched_at is not None else persisted.timestamp()
    before = max(0.0, min(watched, last_heard.started) - persisted.timestamp())
    return persisted, before + (now - last_heard.started)


def log_tail(*, session: Session, run_id: int, lines: int = LOG_TAIL_LINES) -> str:
    rows = session.scalars(select(LogLine.text).where(LogLine.run_id == run_id).order_by(LogLine.id.desc()).limit(lines))
    return "\n".join(reversed(list(rows)))


def _as_datetime(unix_time: float) -> datetime:
    return datetime.fromtimestamp(unix_time, tz=UTC)


def _aware(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes (stored as UTC); PostgreSQL aware ones.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
