"""Importing a run made elsewhere: judge its metrics with the alert engine (import_judge.py: in another
process while it is stored), and store it as a run with status `imported`, through the same point storage and
rollups as a streamed run (docs/metrics.md, "Importing runs"). Reading the file is orpo_dash.run_import's."""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy.orm import Session

from orpo_dash.diagnostics import Alert as AlertChange
from orpo_dash.metric_names import EVAL_PREFIX
from orpo_dash.protocol import MAX_NAME, MAX_STEP
from orpo_dash.run_import import ImportedRun, RunImportError
from server.models import LogLine, Run
from server.services import run_status
from server.services.import_judge import judge
from server.services.ingest import MAX_LOG_LINE, IngestState, record_alert
from server.services.metrics import insert_points
from server.services.runs import hash_token

MAX_RUN_NAME = 200
__all__ = ["check_points", "default_time", "judge", "store"]


def check_points(imported: ImportedRun) -> None:
    """What the database cannot hold: a step past its integer column, a name past its text column."""
    for name, series in imported.series.items():
        if len(name) > MAX_NAME or "\x00" in name:
            raise RunImportError(f"metric name {name[:60]!r}... is longer than {MAX_NAME} characters or holds a NUL; "
                                 "rename it in the file")
        if len(series) and (int(series.steps[0]) < 0 or int(series.steps[-1]) > MAX_STEP):
            raise RunImportError(f"metric {name!r} has steps outside 0..{MAX_STEP}; steps are optimizer step numbers")


def store(*, session: Session, imported: ImportedRun, judgement: Callable[[], list[AlertChange]], name: str | None,
          created_by: str | None, state: IngestState) -> Run:
    """Insert the run, its points (with their rollups) and its alerts, in the caller's transaction. The
    alerts are `judgement()`'s, called once the points are in: it may wait for the judge process, which has
    been judging them meanwhile (import_judge.py); if it raises, so does this, and the caller rolls back."""
    now = default_time()
    walls = [float(t.min()) for t in imported.times.values() if len(t)], [float(t.max()) for t in imported.times.values() if len(t)]
    started = datetime.fromtimestamp(min(walls[0]), UTC) if walls[0] else None
    finished = datetime.fromtimestamp(max(walls[1]), UTC) if walls[1] else None
    run = Run(name=(name or imported.name or "")[:MAX_RUN_NAME], config=imported.config, tags=[], latest_metrics={},
              worker_token_hash=hash_token(secrets.token_urlsafe(32)), created_by=created_by)
    run_status.mark_imported(run, started_at=started, finished_at=finished)
    session.add(run)
    session.flush()  # assigns run.id
    if not run.name:
        run.name = f"run-{run.id}"
    latest: dict[str, float | None] = {}
    last_step = None
    for metric, rows in imported.rows_by_name(now):
        # One metric at a time, in the primary key's order; each is in step order, which the rollups' fast path wants.
        insert_points(session=session, run_id=run.id, points=rows)
        state.rollups.write_new_series(session=session, run_id=run.id, name=metric, points=rows)
        step, _, value, _ = rows[-1]
        latest[metric] = value if math.isfinite(value) else None
        if not metric.startswith(EVAL_PREFIX):
            last_step = step if last_step is None else max(last_step, step)
    run.latest_metrics, run.last_step = latest, last_step
    max_steps = imported.config.get("max_steps")
    run.total_steps = max_steps if isinstance(max_steps, int) and not isinstance(max_steps, bool) else last_step
    for change in judgement():
        record_alert(session=session, run_id=run.id, change=change)
    # The run page's log says where the run came from, and what the reader skipped (a half-written last line).
    source = imported.config.get("imported_from", {})
    lines = [f"imported from {source.get('file')} ({source.get('format')}): {imported.point_count} points of "
             f"{len(imported.series)} metrics up to step {imported.last_step}"]
    lines += [f"import note: {note}" for note in imported.notes]
    session.add_all(LogLine(run_id=run.id, time=now, stream="dashboard", text=line[:MAX_LOG_LINE]) for line in lines)
    return run


def default_time() -> float:
    """The time given to points whose source records none (trainer_state.json, JSONL without times)."""
    return time.time()
