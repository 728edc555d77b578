"""The one place where a run's status changes (tests/test_architecture.py keeps it so).

Statuses only move forward: queued -> running -> one terminal status. Transitions, and who makes them:
- (new) -> queued: a run is created (`queue`).
- (new) -> imported: a run made elsewhere is brought in from its files (`mark_imported`). It never had a
  worker and never changes status again.
- queued -> running: the launcher starts its worker, or an external worker registers it, or its
  worker's first points arrive (`mark_running`). This also starts the worker's liveness clock.
- queued -> stopped: a stop is requested before it ever started (`stop_unstarted`).
- queued/running -> the status its worker reports: running, completed, failed or stopped (`apply_reported`).
  A worker can never set `queued` (that would make the launcher start a second worker for it), and an
  ended run never reopens: resuming is a new run with resume_from.
- queued/running -> completed, stopped or failed: its worker process exited without reporting its end
  (`record_exit`).
- queued/running -> completed, stopped or failed: its cluster job ended (Ray says SUCCEEDED, STOPPED or
  FAILED) without the worker reporting its end (`record_job_end`).
- running -> failed: its cluster job could not be submitted (`fail_launch`).
- running -> lost: nothing heard from its worker for worker_timeout of wall-clock time, a dashboard's
  downtime included; a restarted dashboard judges the runs left running at once (`mark_lost`). A lost worker that comes back still delivers its points, but its
  status reports change nothing.

Ending a run revokes its worker token (`token_revoked_at`): the token then writes nothing more. A lost
run's token is revoked once its worker reports its own end or its process exits, so what a returning
worker still holds can be delivered.

Each function changes the Run it is given (or loads) in the caller's session; the caller commits, which
for every path above means the single database writer (server/writer.py).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from sqlalchemy.orm import Session

from orpo_dash.protocol import TERMINAL_STATUSES, WORKER_STATUSES
from server.models import Run, utcnow

# A worker's error text is kept up to this many characters.
MAX_ERROR_CHARS = 20000


def queue(run: Run) -> None:
    """A new run waits for a worker."""
    run.status = "queued"


def mark_imported(run: Run, *, started_at: datetime | None = None, finished_at: datetime | None = None) -> None:
    """A new run imported from another tool's files: ended before it got here, with no worker token."""
    run.status = "imported"
    run.started_at = started_at
    run.finished_at = finished_at or utcnow()
    run.token_revoked_at = utcnow()


def mark_running(run: Run, *, started_at: datetime | None = None) -> None:
    """Its worker is running; the first start time is kept across restarts."""
    if run.status != "queued":
        raise InvalidTransition(f"run {run.id} is {run.status}; only a queued run starts running")
    run.status = "running"
    run.started_at = run.started_at or started_at or utcnow()
    run.last_seen_at = utcnow()  # its worker has worker_timeout from now to be heard from


def stop_unstarted(run: Run) -> None:
    """A queued run that is stopped never started: nothing to wind down."""
    _end(run, "stopped")


def apply_reported(run: Run, *, new_status: str, total_steps: int | None, error: str | None) -> None:
    """The status a worker reported (the caller checked it is one of WORKER_STATUSES)."""
    if new_status not in WORKER_STATUSES:
        raise InvalidTransition(f"a worker reports only {', '.join(WORKER_STATUSES)}, not {new_status!r}")
    if run.status == "lost":
        # Its worker came back after the run was given up: its points count, its status does not.
        # Once it reports its own end, nothing more can come from it.
        if new_status in TERMINAL_STATUSES:
            run.token_revoked_at = utcnow()
        return
    if run.status in TERMINAL_STATUSES:
        raise InvalidTransition(f"run {run.id} has ended ({run.status}); a resumed run is a new run with resume_from")
    if total_steps is not None:
        run.total_steps = total_steps
    if new_status == "running":
        if run.status == "queued":
            mark_running(run)
    else:
        _end(run, new_status, error=error)


def record_exit(*, session: Session, run_id: int, exit_code: int, stopping: bool, failure: str) -> None:
    """A worker process ended. It normally reports its own end; this covers crashes before or
    instead of that. `stopping`: the launcher asked it to stop; `failure`: the error kept if it failed."""
    run = session.get(Run, run_id)
    if run is None:
        return
    if run.status == "lost":
        run.token_revoked_at = run.token_revoked_at or utcnow()  # the worker is gone: nothing more comes
        return
    if run.status in TERMINAL_STATUSES:
        return
    if exit_code == 0:
        _end(run, "stopped" if run.stop_requested or stopping else "completed")
    elif stopping or run.stop_requested:
        _end(run, "stopped")
    else:
        _end(run, "failed", error=failure)


def mark_lost(*, session: Session, run_id: int, last_seen: datetime, silence: float, timeout: float, log_tail: str) -> bool:
    """Give up on a running run whose worker, last heard from at `last_seen`, has been silent for
    `silence` seconds (wall-clock, a dashboard's downtime included); False if it is not running any
    more (it ended meanwhile)."""
    run = session.get(Run, run_id)
    if run is None or run.status != "running":
        return False
    # Another dashboard process sharing this database (PostgreSQL) may have heard from the worker since
    # this one read the run: its persisted last sign of life is the newer word.
    if run.last_seen_at is not None:
        seen = run.last_seen_at if run.last_seen_at.tzinfo else run.last_seen_at.replace(tzinfo=UTC)  # SQLite: naive UTC
        if time.time() - seen.timestamp() <= timeout:
            return False
    run.status = "lost"
    run.finished_at = utcnow()
    run.error = (
        f"worker lost: nothing heard from its worker since {last_seen:%Y-%m-%d %H:%M:%S} UTC ({silence:.0f} s ago, "
        f"more than worker_timeout = {timeout:g} s). It may have hung, been paused or killed, or lost its network, or the "
        "dashboard was down for longer than that. If it comes "
        "back it is told to stop, and the points it still sends are kept. To continue, start a new run with "
        "resume_from set to its last checkpoint."
        + (f"\nLast log lines:\n{log_tail}" if log_tail else "")
    )[:MAX_ERROR_CHARS]
    return True


# Ray's terminal job statuses (ray.job_submission.JobStatus values).
JOB_SUCCEEDED, JOB_STOPPED, JOB_FAILED = "SUCCEEDED", "STOPPED", "FAILED"


def record_job_end(*, session: Session, run_id: int, job_status: str, stopping: bool, failure: str) -> None:
    """A run's cluster job ended. As with a process exit, the worker normally reported first and this
    changes nothing; otherwise a job that succeeded completed, and one that failed, or was stopped by
    someone other than this dashboard (`ray job stop`), failed with Ray's message in `failure`."""
    record_exit(session=session, run_id=run_id, exit_code=0 if job_status == JOB_SUCCEEDED else 1,
                stopping=stopping, failure=failure)


def fail_launch(*, session: Session, run_id: int, error: str) -> None:
    """Its worker could not be started at all (the cluster refused or could not be reached)."""
    run = session.get(Run, run_id)
    if run is None or run.status in TERMINAL_STATUSES:
        return
    _end(run, "failed", error=error)


class InvalidTransition(ValueError):
    """A status change that would move a run backwards, or that its reporter may not make."""


def _end(run: Run, status: str, *, error: str | None = None) -> None:
    """A run reaches a terminal status: its worker token stops writing from this moment."""
    run.status = status
    run.finished_at = utcnow()
    run.token_revoked_at = run.token_revoked_at or utcnow()
    if error:
        run.error = error[:MAX_ERROR_CHARS]
