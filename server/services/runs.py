"""Runs: create, read, list, rename/tag, delete, stop requests."""

from __future__ import annotations

import hashlib
import math
import secrets
import time
from pathlib import Path

from sqlalchemy import Select, delete, func, select, update
from sqlalchemy.orm import Session

from orpo_dash.metric_names import better_direction
from orpo_dash.protocol import TERMINAL_STATUSES
from orpo_dash.run_config import RunConfig
from server.models import Alert, LogLine, MetricPoint, Run, Sample, Sweep
from server.schemas import AlertPublic, PhasePublic, RunPublic
from server.services import run_status
from server.services.allowed_paths import inside, resolve
from server.services.disk_usage import checkpoint_bytes

LIST_LATEST = ("loss", "log_odds_ratio", "accuracy")
# runs.id is an INTEGER column (migrations/versions/*initial_schema.py): int4 on PostgreSQL, the narrower of the two.
MAX_RUN_ID = 2**31 - 1


WORKER_TOKEN_PREFIX = "odw_"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_matches(run: Run, token: str) -> bool:
    return secrets.compare_digest(run.worker_token_hash, hash_token(token))


def rotate_worker_token(run: Run) -> str:
    """A fresh per-run worker token; only its hash is stored, so the caller hands the token over once."""
    # The prefix says what the secret is when it turns up in a log or a paste, and keeps it from
    # starting with "-", which command-line parsers would read as an option.
    token = WORKER_TOKEN_PREFIX + secrets.token_urlsafe(32)
    run.worker_token_hash = hash_token(token)
    return token


def create_run(
    *, session: Session, config: RunConfig, name: str | None, runs_dir: Path, output_root: Path,
    launched: bool = True, dataset_pairs: int | None = None,
) -> tuple[Run, str]:
    """Insert a queued run; returns it with its worker token.

    `run.output_dir` is the folder the dashboard lists and serves checkpoints from, so it is set only
    inside `output_root`. A run this server launches was refused before it got here if its output_dir
    was outside; an external worker's output_dir is its own business, kept in the config, never read,
    and one that names none gets no per-run folder here (its worker would never write to it).
    `dataset_pairs` (the dataset file's row count, when the dashboard read it) gives the planned steps
    of a run bounded by epochs; its worker reports the exact number when it starts.
    """
    run = Run(name=name or "", config=config.model_dump(mode="json"), tags=[], latest_metrics={},
              total_steps=planned_steps(config, dataset_pairs))
    run_status.queue(run)
    token = rotate_worker_token(run)
    session.add(run)
    session.flush()  # assigns run.id
    if not run.name:
        run.name = f"run-{run.id}"
    _move_aside_leftover_folder(runs_dir / str(run.id))
    if not config.output_dir:
        if launched:
            run.output_dir = str(runs_dir / str(run.id) / "checkpoints")
            run.config = {**run.config, "output_dir": run.output_dir}
    elif inside(resolve(config.output_dir), (output_root,)):
        run.output_dir = config.output_dir
    return run, token


def planned_steps(config: RunConfig, dataset_pairs: int | None) -> int | None:
    """Optimizer steps the run will take, as far as the dashboard can tell before its worker starts:
    max_steps, or epochs x training pairs / pairs per step (the worker drops pairs too long to train on,
    so this can be a little high). None when neither is known."""
    if config.max_steps:
        return config.max_steps
    if not dataset_pairs:
        return None
    train_pairs = dataset_pairs if config.eval_dataset else dataset_pairs - math.ceil(dataset_pairs * config.eval_fraction)
    per_step = config.batch_size * config.gradient_accumulation_steps * max(1, config.gpus)
    return max(1, math.ceil(config.num_epochs * max(train_pairs, 1) / per_step))


def _move_aside_leftover_folder(folder: Path) -> None:
    """A folder already named after a brand-new run belonged to a deleted run that had its id
    (SQLite reused ids before migration 5f1c2d3e4a6b). Its checkpoints and logs are kept, renamed,
    so the new run does not list them as its own or append to its worker log."""
    if folder.exists():
        folder.rename(folder.with_name(f"{folder.name}.deleted-run-{int(time.time())}"))


def get_run(*, session: Session, run_id: int) -> Run | None:
    """The run, or None. An id outside the id column's range names no run: asking the database about
    it would fail (SQLite's INTEGER is 64-bit, PostgreSQL's 32-bit) instead of finding nothing."""
    if not 1 <= run_id <= MAX_RUN_ID:
        return None
    return session.get(Run, run_id)


def list_runs(*, session: Session, status: str | None = None, query: str | None = None,
              sweep_id: int | None = None) -> list[Run]:
    statement = select(Run).order_by(Run.id.desc())
    if status:
        statement = statement.where(Run.status == status)
    if sweep_id is not None:
        statement = statement.where(Run.sweep_id == sweep_id)
    runs = list(session.scalars(statement))
    if query:
        # Model and dataset live in the JSON config: match in Python so the search is the same on every database.
        lowered = query.lower()
        runs = [run for run in runs if lowered in _searchable_text(run)]
    return runs


def _searchable_text(run: Run) -> str:
    parts = [run.name, run.status, str(run.config.get("model", "")), str(run.config.get("dataset", "")), *run.tags]
    return " ".join(parts).lower()


def update_run(*, session: Session, run: Run, name: str | None, tags: list[str] | None) -> Run:
    if name is not None:
        run.name = name
    if tags is not None:
        run.tags = sorted({tag.strip() for tag in tags if tag.strip()})
    return run


def delete_run(*, session: Session, run: Run) -> None:
    # The run's row lock first: a writer (of this or another dashboard process) stores points only
    # while it holds that lock, so none can arrive between the deletes below and the run's own.
    # metric_points has no foreign key to catch such a straggler (models.MetricPoint).
    session.execute(select(Run.id).where(Run.id == run.id).with_for_update())
    # Explicit deletes keep SQLite and PostgreSQL alike even where FK cascades are off.
    alert_ids = select(Alert.id).where(Alert.run_id == run.id)
    session.execute(update(Run).where(Run.from_alert_id.in_(alert_ids)).values(from_alert_id=None))
    session.execute(update(Run).where(Run.parent_run_id == run.id).values(parent_run_id=None))
    for table in (MetricPoint, Alert, LogLine, Sample):
        session.execute(delete(table).where(table.run_id == run.id))
    session.delete(run)


def lineage_errors(*, session: Session, parent_run_id: int | None, from_alert_id: int | None) -> dict[str, str]:
    """Field -> message for a parent run or alert that does not exist or do not belong together."""
    if from_alert_id is not None and parent_run_id is None:
        return {"from_alert_id": "from_alert_id needs parent_run_id: the run whose alert this run fixes"}
    if parent_run_id is None:
        return {}
    if get_run(session=session, run_id=parent_run_id) is None:
        return {"parent_run_id": f"parent_run_id {parent_run_id}: there is no such run (deleted?); leave it empty"}
    if from_alert_id is not None:
        alert = session.get(Alert, from_alert_id) if from_alert_id <= MAX_RUN_ID else None
        if alert is None or alert.run_id != parent_run_id:
            return {"from_alert_id": f"from_alert_id {from_alert_id} is not an alert of run {parent_run_id}; "
                                     "leave it empty or pick one from that run's page"}
    return {}


def lineage_of(*, session: Session, run: Run) -> dict[str, object] | None:
    """What the run page says about a run cloned to fix an alert: the parent (if it still exists) and the alert."""
    if run.parent_run_id is None:
        return None
    parent = get_run(session=session, run_id=run.parent_run_id)
    alert = session.get(Alert, run.from_alert_id) if run.from_alert_id is not None else None
    return {"parent_id": run.parent_run_id, "parent_name": parent.name if parent else None,
            "alert": alert if alert is not None and alert.run_id == run.parent_run_id else None}


def request_stop(*, session: Session, run: Run) -> Run:
    if run.status in TERMINAL_STATUSES:
        return run
    run.stop_requested = True
    if run.status == "queued":
        run_status.stop_unstarted(run)
    return run


def _waiting_in_line() -> Select[int]:
    # The order claim_queued_runs takes them in.
    return select(Run.id).where(Run.status == "queued", Run.stop_requested.is_(False)).order_by(Run.id)


def queue_positions(*, session: Session) -> dict[int, int]:
    """Run id -> place in line (1: starts next) for every run waiting for a worker slot."""
    return {run_id: place for place, run_id in enumerate(session.scalars(_waiting_in_line()), start=1)}


def claim_queued_runs(*, session: Session, limit: int) -> list[Run]:
    """Oldest queued runs, up to `limit`, passing over a sweep's runs while `max_concurrent` of that
    sweep are running; the caller marks them launched."""
    if limit <= 0:
        return []
    statement = select(Run).where(Run.status == "queued", Run.stop_requested.is_(False)).order_by(Run.id)
    if session.scalar(select(Run.id).where(Run.status == "queued", Run.sweep_id.is_not(None)).limit(1)) is None:
        statement = statement.limit(limit)
    else:
        statement = statement.where(Run.id.in_(_startable_ids(session=session, limit=limit)))
    # The same order as _waiting_in_line (queue positions). On PostgreSQL a run another launcher is
    # claiming right now is skipped, never claimed twice (SQLite has one process, and ignores this).
    statement = statement.with_for_update(skip_locked=True)
    return list(session.scalars(statement))


def _startable_ids(*, session: Session, limit: int) -> list[int]:
    """The first `limit` queued runs in line that their sweep's max_concurrent lets start now."""
    running = dict(session.execute(
        select(Run.sweep_id, func.count()).where(Run.status == "running", Run.sweep_id.is_not(None)).group_by(Run.sweep_id)
    ).all())
    room = {sweep_id: max_concurrent - running.get(sweep_id, 0)
            for sweep_id, max_concurrent in session.execute(
                select(Sweep.id, Sweep.max_concurrent).where(Sweep.id.in_(select(Run.sweep_id).where(Run.status == "queued")))
            )}
    chosen: list[int] = []
    for run_id, sweep_id in session.execute(_waiting_in_line().add_columns(Run.sweep_id)):
        if sweep_id is not None:
            if room.get(sweep_id, 1) <= 0:
                continue
            room[sweep_id] = room.get(sweep_id, 1) - 1
        chosen.append(run_id)
        if len(chosen) >= limit:
            break
    return chosen


def list_checkpoints(run: Run) -> list[str]:
    if not run.output_dir:
        return []
    folder = Path(run.output_dir)
    if not folder.is_dir():
        return []
    return sorted((str(p) for p in folder.glob("checkpoint-*") if p.is_dir()), key=_checkpoint_step)


def _checkpoint_step(path: str) -> int:
    tail = path.rsplit("checkpoint-", 1)[-1]
    return int(tail) if tail.isdigit() else -1


def alerts_for(*, session: Session, run_id: int) -> list[Alert]:
    return list(session.scalars(select(Alert).where(Alert.run_id == run_id).order_by(Alert.id)))


def to_public(run: Run, alerts: list[Alert], *, queue_position: int | None = None,
              best: dict[str, float | None] | None = None) -> RunPublic:
    """The run as the API shows it; `queue_position` from queue_positions() for a queued run, `best` from best_values()."""
    latest = run.latest_metrics or {}
    output_dir_exists = bool(run.output_dir) and Path(run.output_dir or "").is_dir()
    return RunPublic(
        id=run.id,
        name=run.name,
        status=run.status,
        config=run.config,
        tags=run.tags or [],
        created_at=run.created_at,
        started_at=run.started_at,
        finished_at=run.finished_at,
        total_steps=run.total_steps,
        last_step=run.last_step,
        error=run.error,
        latest={**{name: None for name in LIST_LATEST}, **latest},
        best=best or {},
        alerts=[AlertPublic.model_validate(alert) for alert in alerts],
        output_dir=run.output_dir,
        output_dir_exists=output_dir_exists,
        checkpoints=list_checkpoints(run) if output_dir_exists else [],
        checkpoint_bytes=checkpoint_bytes(run) if output_dir_exists else 0,
        created_by=run.created_by,
        queue_position=queue_position if run.status == "queued" else None,
        # Only while it runs: an ended run is doing nothing, whatever its worker said last.
        phase=PhasePublic.model_validate(run.phase) if run.phase and run.status == "running" else None,
        parent_run_id=run.parent_run_id,
        from_alert_id=run.from_alert_id,
        sweep_id=run.sweep_id,
    )


def public_run(*, session: Session, run: Run) -> RunPublic:
    """One run with its alerts and, while queued, its place in line."""
    position = queue_positions(session=session).get(run.id) if run.status == "queued" else None
    return to_public(run, alerts_for(session=session, run_id=run.id), queue_position=position)


def best_values(*, session: Session, run_ids: list[int], names: list[str]) -> dict[int, dict[str, float | None]]:
    """Run id -> {metric: best value logged} for the named metrics that have a better direction, in one
    grouped query (the primary key run_id, name, step makes each group one index range)."""
    names = [name for name in dict.fromkeys(names) if better_direction(name)]
    result: dict[int, dict[str, float | None]] = {run_id: dict.fromkeys(names) for run_id in run_ids}
    if not run_ids or not names:
        return result
    rows = session.execute(
        select(MetricPoint.run_id, MetricPoint.name, func.min(MetricPoint.value), func.max(MetricPoint.value))
        .where(MetricPoint.run_id.in_(run_ids), MetricPoint.name.in_(names))
        .group_by(MetricPoint.run_id, MetricPoint.name)
    )
    for run_id, name, low, high in rows:
        result[run_id][name] = low if better_direction(name) < 0 else high
    return result


def public_runs(*, session: Session, runs: list[Run], best: list[str] | None = None) -> list[RunPublic]:
    """The runs with their alerts, queue places and, for the metrics named in `best`, their best values."""
    if not runs:
        return []
    by_run: dict[int, list[Alert]] = {run.id: [] for run in runs}
    for alert in session.scalars(select(Alert).where(Alert.run_id.in_(by_run)).order_by(Alert.id)):
        by_run[alert.run_id].append(alert)
    positions = queue_positions(session=session) if any(run.status == "queued" for run in runs) else {}
    bests = best_values(session=session, run_ids=list(by_run), names=best) if best else {}
    return [to_public(run, by_run[run.id], queue_position=positions.get(run.id), best=bests.get(run.id))
            for run in runs]


def recent_logs(*, session: Session, run_id: int, tail: int) -> list[LogLine]:
    """The run's last `tail` log lines, oldest first."""
    rows = session.scalars(select(LogLine).where(LogLine.run_id == run_id).order_by(LogLine.id.desc()).limit(tail))
    return list(reversed(list(rows)))


def samples_for(*, session: Session, run_id: int) -> list[Sample]:
    return list(session.scalars(select(Sample).where(Sample.run_id == run_id).order_by(Sample.step, Sample.id)))
