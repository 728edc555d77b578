"""The Ray launcher: each queued run becomes a Ray job, submitted through the Ray Jobs API.

The job runs `python -m trainer` on a cluster node; the worker streams to the dashboard over the same
websocket protocol as a local worker, authenticated by the run's token. The token and the run config
travel in the job's runtime_env `env_vars`, never on its entrypoint (Ray shows entrypoints in its job
list and logs).

One background thread talks to Ray: it submits queued runs, sends stop requests, and reconciles each
run with its job's status, so a job that dies without its worker reporting (killed, runtime_env setup
failed, `ray job stop`) still ends its run, with Ray's message. Jobs outlive the dashboard: after a
restart it adopts the jobs it submitted (tagged in their metadata) for runs still running.
"""

from __future__ import annotations

import copy
import json
import logging
import secrets
import shlex
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from orpo_dash.protocol import RUN_CONFIG_ENV, WORKER_TOKEN_ENV
from server.launcher import STOP_GRACE_SECONDS
from server.launchers.worker_command import worker_command
from server.models import Run
from server.services import run_status
from server.services import runs as run_service
from server.writer import DatabaseWriter

log = logging.getLogger(__name__)

ERROR_TAIL_LINES = 30
# Job metadata that ties a Ray job to its run and to the dashboard that submitted it.
RUN_ID_KEY = "orpo_dash_run_id"
SERVER_KEY = "orpo_dash_server"
WRITE_TIMEOUT_SECONDS = 30


@dataclass
class _Job:
    submission_id: str
    stopping: bool = False  # this dashboard asked the run to stop
    stop_sent: bool = False


class RayJobsLauncher:
    """Launcher (server/launcher.py's protocol) whose workers are Ray jobs."""

    def __init__(
        self,
        *,
        writer: DatabaseWriter,
        ray_address: str,
        worker_url: str,
        runs_dir: Path,
        max_concurrent: int,
        cpus_per_run: float,
        runtime_env: dict[str, Any],
        python: str = "",
        model_cache_dir: Path | None = None,
        poll_seconds: float = 2.0,
        issue_token: Callable[[Session, Run], str],
        on_run_changed: Callable[[int], None],
    ) -> None:
        self._writer = writer
        self._address = ray_address
        self._worker_url = worker_url
        self._runs_dir = runs_dir
        self._max_concurrent = max_concurrent
        self._cpus_per_run = cpus_per_run
        self._runtime_env = runtime_env
        # The interpreter on the node, found on its PATH: this machine's sys.executable means nothing there.
        self._python = python or "python"
        self._model_cache_dir = model_cache_dir
        self._poll_seconds = poll_seconds
        self._issue_token = issue_token
        self._on_run_changed = on_run_changed
        self._lock = threading.Lock()
        self._jobs: dict[int, _Job] = {}
        self._client: Any = None
        self._adopted = False
        self._wakeup = threading.Event()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="ray-launcher", daemon=True)
        self._thread.start()

    # --- the Launcher protocol: called from request threads, acted on by the background thread -----
    def wake(self) -> None:
        self._wakeup.set()

    def stop(self, run_id: int) -> None:
        with self._lock:
            job = self._jobs.get(run_id)
            if job is None:
                return
            job.stopping = True
        self._wakeup.set()

    def is_running(self, run_id: int) -> bool:
        with self._lock:
            return run_id in self._jobs

    def shutdown(self) -> None:
        # The jobs keep running on the cluster: their workers reconnect to the next dashboard, which adopts them.
        self._closed.set()
        self._wakeup.set()
        self._thread.join(timeout=WRITE_TIMEOUT_SECONDS)

    # --- the background thread ---------------------------------------------------------------------
    def _loop(self) -> None:
        last_error = ""
        while not self._closed.is_set():
            try:
                self._tick()
                last_error = ""
            except Exception as error:  # noqa: BLE001 - an unreachable head must not end the loop
                if str(error) != last_error:  # once per outage, not every poll
                    log.warning("Ray launcher: %s (Ray Jobs API at %s); queued runs wait, retrying every %g s",
                                error, self._address, self._poll_seconds)
                last_error = str(error)
                self._client = None
            self._wakeup.wait(self._poll_seconds)
            self._wakeup.clear()

    def _tick(self) -> None:
        client = self._connect()
        if not self._adopted:
            self._adopt(client)
            self._adopted = True
        self._send_stops(client)
        self._reconcile(client)
        if not self._closed.is_set():
            self._launch_queued(client)

    def _connect(self) -> Any:
        if self._client is None:
            # Lazily: only a dashboard that chose the Ray launcher needs the `ray` extra.
            from ray.job_submission import JobSubmissionClient

            self._client = JobSubmissionClient(self._address)
        return self._client

    def _adopt(self, client: Any) -> None:
        """Track the jobs an earlier run of this dashboard submitted for runs that are still running."""
        def running_ids(session: Session) -> set[int]:
            return {run.id for run in run_service.list_runs(session=session, status="running")}

        running = self._writer.submit(running_ids).result(timeout=WRITE_TIMEOUT_SECONDS)
        latest: dict[int, Any] = {}
        for job in client.list_jobs():
            metadata = job.metadata or {}
            if metadata.get(SERVER_KEY) != self._worker_url or not str(metadata.get(RUN_ID_KEY, "")).isdigit():
                continue
            run_id = int(metadata[RUN_ID_KEY])
            if run_id in running and (run_id not in latest or (job.start_time or 0) > (latest[run_id].start_time or 0)):
                latest[run_id] = job
        with self._lock:
            for run_id, job in latest.items():
                self._jobs.setdefault(run_id, _Job(job.submission_id))
        if latest:
            log.info("Ray launcher: adopted jobs %s", {run_id: job.submission_id for run_id, job in latest.items()})

    def _send_stops(self, client: Any) -> None:
        with self._lock:
            due = [job for job in self._jobs.values() if job.stopping and not job.stop_sent]
        for job in due:
            # Ray sends the worker SIGTERM (its graceful stop), then SIGKILL after RAY_JOB_STOP_WAIT_TIME_S.
            client.stop_job(job.submission_id)
            job.stop_sent = True

    def _reconcile(self, client: Any) -> None:
        with self._lock:
            tracked = list(self._jobs.items())
        for run_id, job in tracked:
            try:
                info = client.get_job_info(job.submission_id)
            except RuntimeError as error:
                if "404" not in str(error):
                    raise
                self._record_end(run_id, job, run_status.JOB_FAILED,
                                 f"Ray no longer knows job {job.submission_id} (was the cluster restarted?)")
                continue
            status = str(getattr(info.status, "value", info.status))
            if status in (run_status.JOB_SUCCEEDED, run_status.JOB_STOPPED, run_status.JOB_FAILED):
                logs = self._job_logs(client, job)
                tail = "\n".join(logs.strip().splitlines()[-ERROR_TAIL_LINES:])
                message = f"Ray job {job.submission_id} {status}: {info.message or '(no message)'}"
                if self._record_end(run_id, job, status, f"{message}\n{tail}".strip()):
                    # Kept in the run folder, as the local launcher keeps its worker's log.
                    run_dir = self._runs_dir / str(run_id)
                    run_dir.mkdir(parents=True, exist_ok=True)
                    (run_dir / "worker.log").write_text(logs)

    def _record_end(self, run_id: int, job: _Job, status: str, failure: str) -> bool:
        """Reconcile the run with its ended job; False when the run has been deleted meanwhile."""
        def record(session: Session) -> bool:
            run_status.record_job_end(session=session, run_id=run_id, job_status=status,
                                      stopping=job.stopping, failure=failure)
            return session.get(Run, run_id) is not None

        try:
            exists: bool = self._writer.submit(record).result(timeout=WRITE_TIMEOUT_SECONDS)
        finally:
            with self._lock:
                self._jobs.pop(run_id, None)
        log.info("run %s: Ray job %s ended %s", run_id, job.submission_id, status)
        self._on_run_changed(run_id)
        return exists

    def _job_logs(self, client: Any, job: _Job) -> str:
        try:
            return str(client.get_job_logs(job.submission_id))
        except Exception as error:  # noqa: BLE001 - the end is still recorded without its log
            return f"(could not fetch the job's log: {error})"

    def _launch_queued(self, client: Any) -> None:
        with self._lock:
            capacity = self._max_concurrent - len(self._jobs)
        if capacity <= 0:
            return

        def claim(session: Session) -> list[tuple[int, dict, str]]:
            claimed = []
            for run in run_service.claim_queued_runs(session=session, limit=capacity):
                token = self._issue_token(session, run)  # a fresh token per launch; only its hash is kept
                run_status.mark_running(run)
                claimed.append((run.id, dict(run.config), token))
            return claimed

        for run_id, config, token in self._writer.submit(claim).result(timeout=WRITE_TIMEOUT_SECONDS):
            try:
                self._submit(client, run_id, config, token)
            except Exception as error:  # noqa: BLE001 - the run fails with the reason; the loop goes on
                log.warning("run %s: Ray job submission failed: %s", run_id, error)
                self._fail_launch(run_id, f"could not submit the run to Ray at {self._address}: {error}")
            self._on_run_changed(run_id)

    def _submit(self, client: Any, run_id: int, config: dict, token: str) -> None:
        gpus = int(config.get("gpus") or 0)
        command = worker_command(python=self._python, server_url=self._worker_url, run_id=run_id, gpus=gpus,
                                 cache_dir=self._model_cache_dir)
        env_vars = {
            "PYTHONUNBUFFERED": "1",
            WORKER_TOKEN_ENV: token,
            RUN_CONFIG_ENV: json.dumps(config),
            # Ray's own default is 3 s: too short for a worker to finish its step and save a checkpoint.
            "RAY_JOB_STOP_WAIT_TIME_S": str(int(STOP_GRACE_SECONDS)),
        }
        submission_id = f"orpo-dash-run{run_id}-{secrets.token_hex(4)}"
        client.submit_job(
            entrypoint=shlex.join(command),
            submission_id=submission_id,
            runtime_env=job_runtime_env(self._runtime_env, env_vars),
            entrypoint_num_cpus=self._cpus_per_run,
            entrypoint_num_gpus=gpus or None,
            metadata={RUN_ID_KEY: str(run_id), SERVER_KEY: self._worker_url},
        )
        with self._lock:
            self._jobs[run_id] = _Job(submission_id)
        log.info("run %s: submitted as Ray job %s", run_id, submission_id)

    def _fail_launch(self, run_id: int, error: str) -> None:
        def record(session: Session) -> None:
            run_status.fail_launch(session=session, run_id=run_id, error=error)

        self._writer.submit(record).result(timeout=WRITE_TIMEOUT_SECONDS)


def job_runtime_env(base: dict[str, Any], env_vars: dict[str, str]) -> dict[str, Any]:
    """The configured runtime_env (ray_runtime_env) with the run's variables added; ours win a clash."""
    runtime_env = copy.deepcopy(base)
    runtime_env["env_vars"] = {**runtime_env.get("env_vars", {}), **env_vars}
    return runtime_env
