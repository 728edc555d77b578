"""The one place where a run's status changes (tests/test_architecture.py keeps it so).

Transitions allowed today, and who makes them:
- (new) -> queued: a run is created (`queue`).
- queued -> running: the launcher starts its worker, or an external worker registers it, or its
  worker's first points arrive (`mark_running`).
- queued -> stopped: a stop is requested before it ever started (`stop_unstarted`).
- any -> the status its worker reports (running, completed, failed, stopped); a terminal run that
  reports `running` again is a resumed run and reopens (`apply_reported`).
- queued/running -> completed, stopped or failed: its worker process exited without reporting its end
  (`record_exit`).
- queued/running -> completed, stopped or failed: its cluster job ended (Ray says SUCCEEDED, STOPPED or
  FAILED) without the worker reporting its end (`record_job_end`).
- running -> failed: its cluster job could not be submitted (`fail_launch`).
- running -> failed: after a dashboard restart its worker never reconnected (`fail_orphans`).

Each function changes the Run it is given (or loads) in the caller's session; the caller commits, which
for every path above means the single database writer (server/writer.py).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from orpo_dash.protocol import TERMINAL_STATUSES
from server.models import Run, utcnow

# A worker's error text is kept up to this many characters.
MAX_ERROR_CHARS = 20000


def queue(run: Run) -> None:
    """A new run waits for a worker."""
    run.status = "queued"


def mark_running(run: Run, *, started_at: datetime | None = None) -> None:
    """Its worker is running; the first start time is kept across restarts."""
    run.status = "running"
    run.started_at = run.started_at or started_at or utcnow()


def stop_unstarted(run: Run) -> None:
    """A queued run that is stopped never started: nothing to wind down."""
    run.status = "stopped"
    run.finished_at = utcnow()


def apply_reported(run: Run, *, new_status: str, total_steps: int | None, error: str | None) -> None:
    """The status a worker reported (already validated by the caller as one of RUN_STATUSES)."""
    if run.status in TERMINAL_STATUSES and new_status == "running":
        # A resumed run reopens; otherwise terminal states are final.
        run.finished_at = None
        run.error = None
    if total_steps is not None:
        run.total_steps = total_steps
    run.status = new_status
    if new_status == "running":
        run.started_at = run.started_at or utcnow()
    if new_status in TERMINAL_STATUSES:
        run.finished_at = utcnow()
        if error:
            run.error = error[:MAX_ERROR_CHARS]


def record_exit(*, session: Session, run_id: int, exit_code: int, stopping: bool, failure: str) -> None:
    """A worker process ended. It normally reports its own end; this covers crashes before or
    instead of that. `stopping`: the launcher asked it to stop; `failure`: the error kept if it failed."""
    run = session.get(Run, run_id)
    if run is None or run.status in TERMINAL_STATUSES:
        return
    if exit_code == 0:
        run.status = "stopped" if run.stop_requested or stopping else "completed"
    elif stopping or run.stop_requested:
        run.status = "stopped"
    else:
        run.status = "failed"
        run.error = failure
    run.finished_at = utcnow()


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
    run.status, run.finished_at, run.error = "failed", utcnow(), error[:MAX_ERROR_CHARS]


def fail_orphans(*, session: Session, run_ids: list[int], grace_seconds: float) -> list[int]:
    """Mark failed those of `run_ids` still running whose worker never came back; returns their ids."""
    failed = []
    for run_id in run_ids:
        run = session.get(Run, run_id)
        if run is not None and run.status == "running":
            run.status, run.finished_at = "failed", utcnow()
            run.error = (f"worker lost: the dashboard restarted and this run's worker did not reconnect within "
                         f"{grace_seconds:g} s. Resume from its last checkpoint with a new run (resume_from).")
            failed.append(run_id)
    return failed
