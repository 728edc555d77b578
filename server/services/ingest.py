"""Applying one worker batch inside the writer's transaction, and what to announce once it commits."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from orpo_dash.diagnostics import Alert as AlertChange
from orpo_dash.diagnostics import AlertEngine
from orpo_dash.metric_names import EVAL_PREFIX
from orpo_dash.protocol import (
    MAX_SAMPLE_CHARS,
    MAX_STEP,
    TERMINAL_STATUSES,
    WORKER_STATUSES,
    Point,
    ProtocolError,
    parse_phase,
    parse_points,
    shown,
)
from server.models import Alert, AlertEngineState, LogLine, Run, Sample
from server.services import run_status, sweeps
from server.services.metrics import insert_points, points_after_each
from server.services.rollups import RollupTracker

MAX_LOG_LINE = 4000
# How often a streaming run's alert engine is saved: a restart replays at most this much of its points.
SAVE_EVERY_SECONDS = 5.0


@dataclass
class Announcement:
    """What subscribed browsers must hear about once the transaction commits."""

    run_id: int
    points: list[Point] = field(default_factory=list)
    run_changed: bool = False
    # A new status or a new phase (not a phase's progress) is always pushed at once: the run-frame
    # throttle would otherwise drop the last change of a burst for good (no later batch re-sends it).
    push_now: bool = False
    alerts: list[Alert] = field(default_factory=list)
    # The run was asked to stop while this batch was applied (a sweep's stop_on_critical): its worker
    # and launcher are told once the stop request is committed.
    stop_worker: bool = False
    logs: list[dict[str, Any]] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)
    # The LogLine and Sample rows behind `logs` and `samples`: once flushed, their ids tell other
    # dashboard processes which rows to read (server/fanout.py).
    rows: list[LogLine | Sample] = field(default_factory=list, repr=False)


class AlertEngines:
    """One incremental alert engine per run, kept in memory while its worker streams, and saved with the
    batches (at most every SAVE_EVERY_SECONDS, and at the run's end) so that after a restart it is
    restored, not rebuilt: only the points committed after the last save go through it again."""

    def __init__(self) -> None:
        self._engines: dict[int, AlertEngine] = {}
        self._saved_at: dict[int, float] = {}

    def for_run(self, *, session: Session, run: Run) -> AlertEngine:
        engine = self._engines.get(run.id)
        if engine is None:
            engine = self._load(session=session, run=run)
            self._engines[run.id] = engine
        return engine

    def save(self, *, session: Session, run_id: int, force: bool = False) -> None:
        """Store the run's engine in the current transaction, unless it was saved moments ago."""
        engine = self._engines.get(run_id)
        now = time.time()
        if engine is None or (not force and now - self._saved_at.get(run_id, -math.inf) < SAVE_EVERY_SECONDS):
            return
        text = json.dumps(engine.state(), separators=(",", ":"))
        row = session.get(AlertEngineState, run_id)
        if row is None:
            session.add(AlertEngineState(run_id=run_id, state=text, saved_at=now))
        else:
            row.state, row.saved_at = text, now
        self._saved_at[run_id] = now

    def forget(self, run_id: int) -> None:
        self._engines.pop(run_id, None)
        self._saved_at.pop(run_id, None)

    def _load(self, *, session: Session, run: Run) -> AlertEngine:
        thresholds = run.config.get("alert_thresholds") or None
        try:
            AlertEngine(thresholds)
        except ValueError as exc:
            # A config stored before its thresholds were checked at launch: refusing every batch over
            # it would lose the run's metrics, so judge with the defaults and say so in the run's log.
            thresholds = None
            session.add(LogLine(run_id=run.id, time=time.time(), stream="dashboard",
                                text=f"alert_thresholds ignored, alerts use the defaults: {exc}"))
        # The planned length scales the step thresholds (a 60-step run is judged by step 20): the
        # worker's reported total, else the config's max_steps; unknown (epochs only) keeps the defaults.
        planned = run.total_steps or run.config.get("max_steps") or None
        saved = session.get(AlertEngineState, run.id)
        engine = None
        if saved is not None:
            try:
                engine = AlertEngine.restored(json.loads(saved.state), thresholds, planned, config=run.config)
            except (ValueError, KeyError, TypeError):
                engine = None  # saved by another version of the engine: rebuild from the history below
        if engine is None:
            engine = AlertEngine(thresholds, planned, config=run.config)
        # The points committed after the save (all of them without one). Their state changes were
        # stored when they first happened: discard them here.
        tail = points_after_each(session=session, run_id=run.id, names=sorted(run.latest_metrics or {}),
                                 after=engine.last_steps())
        engine.feed((step, name, math.nan if value is None else value) for step, name, value, _ in tail)
        return engine


class IngestState:
    """Per-run derived state the writer keeps between batches: alert engines and rollup progress."""

    def __init__(self) -> None:
        self.alerts = AlertEngines()
        self.rollups = RollupTracker()
        self._last_applied: dict[int, int] = {}  # run id -> seq of the last batch this process applied

    def forget(self, run_id: int) -> None:
        self.alerts.forget(run_id)
        self.rollups.forget(run_id)
        self._last_applied.pop(run_id, None)

    def catch_up(self, run: Run) -> None:
        """Drop the run's state if it missed batches: several dashboard processes may share one
        database, and a worker that reconnected to another one while this one kept the run's alert
        engine in memory has had batches applied there. Reloaded from the database on next use."""
        if self._last_applied.get(run.id, run.last_seq) != run.last_seq:
            self.forget(run.id)

    def applied(self, run_id: int, seq: int) -> None:
        self._last_applied[run_id] = seq


class BatchOutOfOrder(Exception):
    """Not the batch's fault: the worker must reconnect and resend from what was committed."""


class RunEnded(Exception):
    """The run has ended and its worker token writes nothing more. Batches it already committed
    (seq <= acked_seq) are still acknowledged; this one is refused."""

    def __init__(self, run_id: int, status: str, acked_seq: int) -> None:
        super().__init__(f"run {run_id} has ended ({status}); its worker token writes nothing more")
        self.final_status = status
        self.acked_seq = acked_seq


def skip_rejected_batch(*, session: Session, run_id: int, seq: int) -> None:
    """Count a batch that was refused as malformed as consumed, so the batches after it still follow
    on without a gap (the worker drops a refused batch and never resends it)."""
    run = session.get(Run, run_id, with_for_update=True)
    if run is not None and run.last_seq == seq - 1:
        run.last_seq = seq


def parse_batch(message: dict[str, Any]) -> tuple[int, list[Point]]:
    seq = message.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq <= 0:
        raise ProtocolError(f"batch seq must be a positive integer, got {seq!r}")
    raw_points = message.get("points") or []
    if not isinstance(raw_points, list):
        raise ProtocolError("batch points must be a list of [step, name, value, time]")
    return seq, parse_points(raw_points)


def apply_batch(
    *, session: Session, run_id: int, message: dict[str, Any], state: IngestState
) -> Announcement | None:
    """Write one batch. Returns None when its seq was already committed (a resend after reconnect)."""
    seq, points = parse_batch(message)
    run = session.get(Run, run_id, with_for_update=True)
    if run is None:
        raise ProtocolError(f"run {run_id} no longer exists")
    if seq <= run.last_seq:
        return None  # committed before, perhaps just before the run ended: acknowledged again
    if run.token_revoked_at is not None:
        raise RunEnded(run_id, run.status, run.last_seq)
    if seq > run.last_seq + 1:
        # An earlier batch of this worker failed to commit (e.g. the database dropped its connection)
        # after later ones were already queued: applying this one would skip that one for good.
        raise BatchOutOfOrder(f"batch {seq} of run {run_id} arrived before batch {run.last_seq + 1}")
    state.catch_up(run)
    announcement = Announcement(run_id=run_id)

    if points:
        engine = state.alerts.for_run(session=session, run=run)
        all_stored = insert_points(session=session, run_id=run_id, points=points)
        state.rollups.update(session=session, run_id=run_id, points=points, all_stored=all_stored)
        announcement.points = points
        _update_progress(run, points)
        # (step, name, value) cut at C speed: a generator expression here cost a Python frame per point.
        for change in engine.feed(map(itemgetter(0, 1, 2), points)):
            alert = record_alert(session=session, run_id=run_id, change=change)
            announcement.alerts.append(alert)
            if run.sweep_id is not None:
                _stop_for_sweep(session=session, run=run, alert=alert, announcement=announcement)

    if message.get("phase") is not None:
        phase = parse_phase(message["phase"])
        if (run.phase or {}).get("name") != phase["name"]:
            announcement.push_now = True
        run.phase = phase
        announcement.run_changed = True
    status = message.get("status")
    if status:
        _apply_status(run, status)
        announcement.run_changed = announcement.push_now = True
        if run.status in TERMINAL_STATUSES:
            # The detectors judge a step once the next one starts; the last step is judged at the end.
            engine = state.alerts.for_run(session=session, run=run)
            for change in engine.flush():
                announcement.alerts.append(record_alert(session=session, run_id=run_id, change=change))
    if points:
        announcement.run_changed = True

    for entry in _list_of(message, "logs"):
        when, stream, text = _parse_log(entry)
        log_line = LogLine(run_id=run_id, time=when, stream=stream, text=text)
        session.add(log_line)
        announcement.rows.append(log_line)
        announcement.logs.append({"time": when, "stream": stream, "text": text})
    for sample in _list_of(message, "samples"):
        step, prompt, completion, when = _parse_sample(sample)
        row = Sample(run_id=run_id, step=step, prompt=prompt, completion=completion, time=when)
        session.add(row)
        announcement.rows.append(row)
        announcement.samples.append({"step": row.step, "prompt": row.prompt, "completion": row.completion, "time": row.time})

    state.alerts.save(session=session, run_id=run_id, force=run.status in TERMINAL_STATUSES)
    run.last_seq = seq
    state.applied(run_id, seq)
    return announcement


def _stop_for_sweep(*, session: Session, run: Run, alert: Alert, announcement: Announcement) -> None:
    """A sweep's stop_on_critical: the stop request and its reason go out with this batch's commit."""
    line = sweeps.stop_on_critical(session=session, run=run, alert=alert)
    if line is not None:
        announcement.stop_worker = announcement.run_changed = announcement.push_now = True
        announcement.rows.append(line)
        announcement.logs.append({"time": line.time, "stream": line.stream, "text": line.text})


def _update_progress(run: Run, points: list[Point]) -> None:
    latest = dict(run.latest_metrics or {})
    last_step = run.last_step if run.last_step is not None else -1
    # Per metric, the last in the batch wins. Built by dict() from C-level maps: this runs over every point.
    newest = dict(zip(map(itemgetter(1), points), map(itemgetter(2), points), strict=True))
    latest.update((name, value if math.isfinite(value) else None) for name, value in newest.items())
    if any(name.startswith(EVAL_PREFIX) for name in newest):
        batch_step = max((step for step, name, _, _ in points if not name.startswith(EVAL_PREFIX)), default=-1)
    else:
        batch_step = max(map(itemgetter(0), points))
    last_step = max(last_step, batch_step)
    run.latest_metrics = latest  # reassign: JSON columns are not mutation-tracked
    run.last_step = last_step if last_step >= 0 else run.last_step
    if run.status == "queued":
        run_status.mark_running(run)


def _apply_status(run: Run, status: Any) -> None:
    if not isinstance(status, dict):
        raise ProtocolError(f"a batch's status must be an object like {{\"status\": \"running\"}}, got {shown(status)}")
    new_status = status.get("status")
    if new_status not in WORKER_STATUSES:
        raise ProtocolError(f"a worker's status must be one of {', '.join(WORKER_STATUSES)}, got {shown(new_status)} "
                            "(queued and lost are the dashboard's to set)")
    total = status.get("total_steps")
    if total is not None and (not isinstance(total, int) or isinstance(total, bool) or not 0 <= total <= MAX_STEP):
        raise ProtocolError(f"total_steps must be an integer from 0 to {MAX_STEP}, got {shown(total)}")
    error = _text(status["error"]) if status.get("error") else None
    try:
        run_status.apply_reported(run, new_status=new_status, total_steps=total, error=error)
    except run_status.InvalidTransition as refused:
        raise ProtocolError(str(refused)) from None


def _parse_log(entry: Any) -> tuple[float, str, str]:
    if not isinstance(entry, (list, tuple)) or len(entry) != 3 or not _is_number(entry[0]):
        raise ProtocolError(f"a log entry must be [time, stream, text], got {shown(entry)}")
    when, stream, text = entry
    return float(when), _text(stream)[:20], _text(text)[:MAX_LOG_LINE]


def _parse_sample(sample: Any) -> tuple[int, str, str, float]:
    if not isinstance(sample, dict):
        raise ProtocolError(f"a sample must be an object with step, prompt and completion, got {shown(sample)}")
    step, when = sample.get("step"), sample.get("time", time.time())
    if not isinstance(step, int) or isinstance(step, bool) or not 0 <= step <= MAX_STEP:
        raise ProtocolError(f"a sample's step must be an integer from 0 to {MAX_STEP}, got {shown(step)}")
    if not _is_number(when):
        raise ProtocolError(f"a sample's time must be a unix timestamp, got {shown(when)}")
    prompt, completion = _text(sample.get("prompt", "")), _text(sample.get("completion", ""))
    for part, text in (("prompt", prompt), ("completion", completion)):
        if len(text) > MAX_SAMPLE_CHARS:
            raise ProtocolError(f"a sample's {part} may hold at most {MAX_SAMPLE_CHARS} characters, got {len(text)}")
    return step, prompt, completion, float(when)


def _list_of(message: dict[str, Any], key: str) -> list[Any]:
    value = message.get(key) or []
    if not isinstance(value, list):
        raise ProtocolError(f"a batch's {key} must be a list, got {shown(value)}")
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _text(value: Any) -> str:
    # PostgreSQL text cannot hold NUL; a model can still generate one, so it is shown as U+FFFD.
    return str(value).replace("\x00", "\ufffd")


def record_alert(*, session: Session, run_id: int, change: AlertChange) -> Alert:
    existing = session.scalars(
        select(Alert).where(Alert.run_id == run_id, Alert.kind == change.kind, Alert.state == "open")
    ).first()
    if change.state == "closed":
        if existing is None:
            existing = Alert(run_id=run_id, kind=change.kind, severity=change.severity, onset_step=change.onset_step,
                             step=change.step, message=change.message, details=change.details,
                             advice=change.advice, suggested_change=change.suggested_change, state="closed")
            session.add(existing)
        existing.state = "closed"
        existing.closed_step = change.step
        session.flush()
        return existing
    if existing is not None:
        # Same problem, newer evidence (e.g. warning escalated to critical): one row, updated.
        existing.severity, existing.step, existing.message = change.severity, change.step, change.message
        existing.details = change.details
        existing.advice, existing.suggested_change = change.advice, change.suggested_change
        session.flush()
        return existing
    alert = Alert(run_id=run_id, kind=change.kind, severity=change.severity, onset_step=change.onset_step,
                  step=change.step, message=change.message, details=change.details, advice=change.advice,
                  suggested_change=change.suggested_change, state="open")
    session.add(alert)
    session.flush()
    return alert
