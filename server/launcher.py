"""Launchers start workers for queued runs. The run queue lives in the database (status 'queued');
a launcher claims runs from it. LocalProcessLauncher runs one subprocess per run on this machine;
server/launchers/ray_jobs.py's RayJobsLauncher submits each run as a Ray job (setting `launcher`)."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from sqlalchemy.orm import Session

from orpo_dash.protocol import WORKER_TOKEN_ENV
from server.launchers.capacity import threads_per_cpu_run, visible_gpus
from server.launchers.worker_command import worker_command
from server.models import Run
from server.services import run_status
from server.services import runs as run_service
from server.services.spill_delivery import RunDeleted, deliver_spill_file, spill_file_of
from server.writer import DatabaseWriter

log = logging.getLogger(__name__)

# After a stop request, how long a worker may take to finish its step and save before it is killed.
STOP_GRACE_SECONDS = 180.0
ERROR_TAIL_LINES = 30


class Launcher(Protocol):
    def wake(self) -> None:
        """Look at the queue and start whatever capacity allows."""

    def stop(self, run_id: int) -> None:
        """Ask a run's worker to stop gracefully, escalating if it does not."""

    def is_running(self, run_id: int) -> bool:
        """Whether this launcher has a live worker for the run."""

    def shutdown(self) -> None:
        """Stop every worker this launcher started (server shutdown)."""


class NoLauncher:
    """For dashboards that only receive runs from external workers (`orpo-dash train --server`)."""

    def wake(self) -> None:
        pass

    def stop(self, run_id: int) -> None:
        pass

    def is_running(self, run_id: int) -> bool:
        return False

    def shutdown(self) -> None:
        pass


class LocalProcessLauncher:
    def __init__(
        self,
        *,
        writer: DatabaseWriter,
        server_url: str,
        runs_dir: Path,
        max_concurrent: int,
        python: str = "",
        model_cache_dir: Path | None = None,
        issue_token: Callable[[Session, Run], str],
        on_run_changed: Callable[[int], None],
    ) -> None:
        self._writer = writer
        self._server_url = server_url
        self._runs_dir = runs_dir
        self._max_concurrent = max_concurrent
        self._python = python or sys.executable
        self._model_cache_dir = model_cache_dir
        self._issue_token = issue_token
        self._on_run_changed = on_run_changed
        self._lock = threading.Lock()
        self._processes: dict[int, subprocess.Popen[bytes]] = {}
        self._stopping: set[int] = set()
        self._watchers: dict[int, threading.Thread] = {}
        self._closed = False
        self._gpus = visible_gpus()
        self._gpu_of: dict[int, str] = {}  # run id -> the one GPU its worker was given

    def wake(self) -> None:
        threading.Thread(target=self._launch_queued, name="launcher-wake", daemon=True).start()

    def _launch_queued(self) -> None:
        with self._lock:
            if self._closed:
                return
            capacity = self._max_concurrent - len(self._processes)
            if capacity <= 0:
                return

            def claim(session: Session) -> list[tuple[int, dict, str]]:
                claimed = []
                for run in run_service.claim_queued_runs(session=session, limit=capacity):
                    # A fresh token per launch: the worker gets it in its environment (WORKER_TOKEN_ENV), only the hash is kept.
                    token = self._issue_token(session, run)
                    run_status.mark_running(run)
                    claimed.append((run.id, dict(run.config), token))
                return claimed

            for run_id, config, token in self._writer.submit(claim).result():
                self._spawn(run_id, config, token)
                self._on_run_changed(run_id)

    def _spawn(self, run_id: int, config: dict, token: str) -> None:
        run_dir = self._runs_dir / str(run_id)
        run_dir.mkdir(parents=True, exist_ok=True)
        config_path = run_dir / "config.json"
        config_path.write_text(json.dumps(config, indent=2))
        command = worker_command(python=self._python, server_url=self._server_url, run_id=run_id,
                                 gpus=int(config.get("gpus") or 0), config_path=config_path,
                                 cache_dir=self._model_cache_dir)
        log_path = run_dir / "worker.log"
        with open(log_path, "ab") as log_file:
            process = subprocess.Popen(
                command, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                # The token goes in the environment: on the command line `ps` would show it to every
                # user of the machine.
                env={**os.environ, **self._placement(run_id, config), "PYTHONUNBUFFERED": "1", WORKER_TOKEN_ENV: token},
                start_new_session=True,  # a Ctrl-C in the server terminal must not kill runs mid-step
            )
        self._processes[run_id] = process
        log.info("run %s: worker pid %s started", run_id, process.pid)
        spill_path = spill_file_of(config=config, run_id=run_id, pid=process.pid, cwd=Path.cwd())
        watcher = threading.Thread(
            target=self._watch, args=(run_id, process, log_path, spill_path), name=f"watch-{run_id}", daemon=True
        )
        self._watchers[run_id] = watcher
        watcher.start()

    def _placement(self, run_id: int, config: dict) -> dict[str, str]:
        """Environment that keeps runs trained side by side out of each other's way: each single-GPU
        run on its own GPU (the least busy one), CPU runs sharing the cores instead of each taking all."""
        if self._gpus and int(config.get("gpus") or 0) <= 1 and config.get("device") != "cpu":
            in_use = list(self._gpu_of.values())
            gpu = min(self._gpus, key=in_use.count)
            self._gpu_of[run_id] = gpu
            return {"CUDA_VISIBLE_DEVICES": gpu}
        if not self._gpus and self._max_concurrent > 1 and "OMP_NUM_THREADS" not in os.environ:
            return {"OMP_NUM_THREADS": str(threads_per_cpu_run(self._max_concurrent))}
        return {}

    def _watch(self, run_id: int, process: subprocess.Popen[bytes], log_path: Path, spill_path: Path) -> None:
        code = process.wait()
        with self._lock:
            self._processes.pop(run_id, None)
            self._gpu_of.pop(run_id, None)
            stopping = run_id in self._stopping
            self._stopping.discard(run_id)
        try:
            self._record_end(run_id, code, stopping, log_path, spill_path)
        finally:
            # Only now: shutdown() joins the watchers still listed, so the writer outlives this one's writes.
            with self._lock:
                self._watchers.pop(run_id, None)
        self._launch_queued()

    def _record_end(self, run_id: int, code: int, stopping: bool, log_path: Path, spill_path: Path) -> None:
        error_tail = _tail(log_path, ERROR_TAIL_LINES)
        if spill_path.exists():
            # Before recording the exit: the spilled batches may hold the worker's own final status.
            self._deliver_spill(run_id, spill_path)

        def record_exit(session: Session) -> None:
            run_status.record_exit(session=session, run_id=run_id, exit_code=code, stopping=stopping,
                                   failure=f"{describe_exit(code)}:\n{error_tail}")

        try:
            self._writer.submit(record_exit).result(timeout=30)
        except Exception:  # noqa: BLE001
            log.exception("run %s: recording worker exit failed", run_id)
        self._on_run_changed(run_id)

    def _deliver_spill(self, run_id: int, spill_path: Path) -> None:
        try:
            batches = deliver_spill_file(spill_path, run_id=run_id, writer=self._writer)
        except RunDeleted:
            spill_path.unlink(missing_ok=True)  # its metrics were deleted with it; this is their tail
            log.info("run %s: deleted while its worker stopped; dropped its spill file", run_id)
            return
        except Exception:  # noqa: BLE001 - the file stays for `orpo-dash upload`; the exit is still recorded
            log.exception("run %s: could not deliver the worker's spill file %s", run_id, spill_path)
            return
        log.info("run %s: delivered %s batch(es) the worker had spilled to %s", run_id, batches, spill_path)

    def is_running(self, run_id: int) -> bool:
        with self._lock:
            return run_id in self._processes

    def stop(self, run_id: int) -> None:
        with self._lock:
            process = self._processes.get(run_id)
            if process is None:
                return
            self._stopping.add(run_id)
        # SIGTERM is the worker's graceful stop too (finish the step, checkpoint, report 'stopped'),
        # so this works even before the worker's websocket is up.
        _signal(process, signal.SIGTERM)
        timer = threading.Timer(STOP_GRACE_SECONDS, _signal, args=(process, signal.SIGKILL))
        timer.daemon = True
        timer.start()

    def shutdown(self) -> None:
        with self._lock:
            self._closed = True
            processes = list(self._processes.values())
            # Interrupted by the dashboard going down: their clean exit means "stopped", not "completed".
            self._stopping.update(self._processes)
        for process in processes:
            _signal(process, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                _signal(process, signal.SIGKILL)
        # Let each watcher record its run's end before the database writer stops.
        with self._lock:
            watchers = list(self._watchers.values())
        for watcher in watchers:
            watcher.join(timeout=15)


def describe_exit(code: int) -> str:
    """A worker's exit status in words; a negative code is the signal that killed it."""
    if code >= 0:
        return f"worker exited with code {code}"
    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = f"signal {-code}"
    hint = " (often the kernel's out-of-memory killer: try a smaller batch_size or max_length)" if -code == signal.SIGKILL else ""
    return f"worker was killed by {name}{hint}"


def _signal(process: subprocess.Popen[bytes], sig: int) -> None:
    if process.poll() is None:
        try:
            process.send_signal(sig)
        except ProcessLookupError:
            pass


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])
