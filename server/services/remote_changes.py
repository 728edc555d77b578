"""What another dashboard process committed, read back from the database for this process's browsers.

A notification (server/fanout.py) only names what changed: a run, the lowest step of its new points,
the ids of its new alert, log and sample rows, whether the run itself changed. The data is read here,
so nothing reaches a browser that is not committed, and a lost notification costs a read, not a point.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from server.models import Alert, LogLine, Run, Sample
from server.schemas import AlertPublic
from server.services import runs as run_service

# Each series' new points after its own cursor, one index range scan per series in one round trip.
# The run's chart series are few (~15), the rows new since the last notification few (one batch or two).
NEW_POINTS_SQL = (
    "SELECT fresh.step, series.name, fresh.value, fresh.time "
    "FROM unnest(%s::text[], %s::int4[]) AS series(name, after) "
    "CROSS JOIN LATERAL (SELECT step, value, time FROM metric_points "
    "WHERE run_id = %s AND name = series.name AND step > series.after ORDER BY step) AS fresh "
    "ORDER BY fresh.step, series.name"
)


@dataclass
class RunChanges:
    """Everything the notifications of one round said about one run."""

    first_step: int | None = None  # lowest step among the notified points
    run_changed: bool = False
    push_now: bool = False
    alert_ids: set[int] = field(default_factory=set)
    log_ids: list[int] = field(default_factory=list)  # [lowest, highest] id; LogLine ids of one run
    sample_ids: list[int] = field(default_factory=list)

    def merge(self, payload: dict[str, Any]) -> None:
        if "p" in payload:
            low = int(payload["p"])
            self.first_step = low if self.first_step is None else min(self.first_step, low)
        if payload.get("u"):
            self.run_changed = True
            self.push_now = self.push_now or payload["u"] == 2
        self.alert_ids.update(int(i) for i in payload.get("a", ()))
        self.log_ids = _widen(self.log_ids, payload.get("l"))
        self.sample_ids = _widen(self.sample_ids, payload.get("s"))


class SeriesCursors:
    """Per watched run, the last step of each series this process has published; a run seen for the
    first time starts just below the lowest step of the notification that brought it (everything
    committed before that notification is in the history each browser read when it subscribed)."""

    def __init__(self) -> None:
        self._after: dict[int, dict[str, int]] = {}
        self._floor: dict[int, int] = {}

    def forget(self, run_id: int) -> None:
        self._after.pop(run_id, None)
        self._floor.pop(run_id, None)

    def forget_all(self) -> None:
        self._after.clear()
        self._floor.clear()

    def watched(self) -> list[int]:
        return list(self._floor)

    def read_new_points(self, *, session: Session, run: Run, first_step: int | None) -> list[list[Any]]:
        if run.id not in self._floor:
            if first_step is None:
                return []
            self._floor[run.id] = first_step - 1
            self._after[run.id] = {}
        floor, after = self._floor[run.id], self._after[run.id]
        names = sorted(run.latest_metrics or {})
        if not names:
            return []
        rows = session.connection().exec_driver_sql(
            NEW_POINTS_SQL, (names, [max(after.get(name, floor), floor) for name in names], run.id)).fetchall()
        points = []
        for step, name, value, when in rows:
            after[name] = max(after.get(name, floor), step)
            points.append([step, name, value if value is None or math.isfinite(value) else None, when])
        return points


def read_messages(*, session: Session, run_id: int, changes: RunChanges, cursors: SeriesCursors,
                  with_run: bool) -> list[dict[str, Any]]:
    """The browser messages (docs/protocol.md) for one run's changes, in the order its own process sends them."""
    run = session.get(Run, run_id)
    if run is None:
        cursors.forget(run_id)
        return []
    messages: list[dict[str, Any]] = []
    points = cursors.read_new_points(session=session, run=run, first_step=changes.first_step)
    if points:
        messages.append({"type": "points", "points": points})
    if changes.alert_ids:
        alerts = session.scalars(select(Alert).where(Alert.run_id == run_id, Alert.id.in_(changes.alert_ids)).order_by(Alert.id))
        messages += [{"type": "alert", "alert": AlertPublic.model_validate(alert).model_dump(mode="json")} for alert in alerts]
    if changes.log_ids:
        lines = session.scalars(select(LogLine).where(LogLine.run_id == run_id, LogLine.id.between(changes.log_ids[0], changes.log_ids[1]))
                                .order_by(LogLine.id))
        messages.append({"type": "logs", "lines": [{"time": line.time, "stream": line.stream, "text": line.text} for line in lines]})
    if changes.sample_ids:
        samples = session.scalars(select(Sample).where(Sample.run_id == run_id, Sample.id.between(changes.sample_ids[0], changes.sample_ids[1]))
                                  .order_by(Sample.id))
        messages.append({"type": "samples", "samples": [
            {"step": row.step, "prompt": row.prompt, "completion": row.completion, "time": row.time} for row in samples]})
    if with_run:
        public = run_service.to_public(run, run_service.alerts_for(session=session, run_id=run_id))
        messages.append({"type": "run", "run": public.model_dump(mode="json")})
    return messages


def _widen(span: list[int], more: Any) -> list[int]:
    if not more:
        return span
    low, high = int(more[0]), int(more[1])
    return [min(span[0], low), max(span[1], high)] if span else [low, high]
