"""The alert engine's judgement of an imported run, made in another process while the writer stores it.

Judging 100,000 steps x 15 metrics is ~3-4 s of pure Python, storing them ~2.5 s; one after the other they
passed the 10 s import target (issue 17). The judgement needs only the run's numpy columns (cheap to pickle)
and gives back a short list of alert changes, so it runs in a process pool beside the writer thread, and the
writer's transaction waits for it at its end (server/routes/api_imports.py): one transaction, the same alerts.

The pool uses the "forkserver" start method, never "fork": the dashboard has threads (uvicorn's, the
writer's) and forking a threaded process can copy a held lock into the child. It is made at the first
import and shut down with the app. This module imports only orpo_dash (no database, no web framework):
the child loads nothing else. When no process can be started, imports are judged in the request's thread,
as before, and the log says why.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import replace

from orpo_dash.diagnostics import Alert as AlertChange
from orpo_dash.diagnostics import AlertEngine
from orpo_dash.import_common import ImportedRun
from orpo_dash.protocol import Point

log = logging.getLogger(__name__)

# "fork" would copy the dashboard's threads' locks; forkserver forks from a clean single-threaded server.
START_METHOD = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


def judge(imported: ImportedRun, points: list[Point]) -> list[AlertChange]:
    """The alert engine over the whole run, as if it had streamed: every state change, in order. Its
    planned length is the run's last step (the step thresholds scale with it, as for a native run).
    Advice is fitted to the config only when it is a whole run config of ours (a JSON export): a
    trainer_state.json says nothing of beta or the peak learning rate, and a W&B config or MLflow params hold
    some of our fields but not all (LoRA, dtype, warmup...): advice must not assume our defaults for the rest."""
    config = imported.config
    ours = imported.format == "metrics_file"
    known = config if ours and all(key in config for key in ("beta", "learning_rate", "model")) else None
    thresholds = config.get("alert_thresholds") if isinstance(config.get("alert_thresholds"), dict) else None
    try:
        engine = AlertEngine(thresholds or None, imported.last_step or None, config=known)
    except ValueError:  # thresholds from another version, say: judge with the defaults
        engine = AlertEngine(None, imported.last_step or None, config=known)
    return engine.feed((step, name, value) for step, name, value, _ in points) + engine.flush()


def judge_run(imported: ImportedRun) -> list[AlertChange]:
    """judge() over the run's points in the order a streamed run's arrive (what the child process runs).
    The engine reads no point's time, so 0.0 stands in for the times."""
    return judge(imported, imported.points(0.0))


class JudgePool:
    """One worker process judging imports, started at the first import; in-thread when it cannot start."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._executor: ProcessPoolExecutor | None = None
        self._unavailable: str | None = None  # why no process can be used: judge in the caller's thread

    def submit(self, imported: ImportedRun) -> Future[list[AlertChange]]:
        """The run's judgement, under way in the worker process; made here, already done, when there is none."""
        # Only the columns travel: the times stay here (the engine does not read them).
        lean = replace(imported, times={}, notes=[])
        executor = self._get_executor()
        if executor is not None:
            try:
                return executor.submit(judge_run, lean)
            except (BrokenProcessPool, OSError, RuntimeError) as error:
                self._give_up(f"the judge process could not start ({error!r})")
        return _done(lambda: judge_run(lean))

    def result(self, future: Future[list[AlertChange]], imported: ImportedRun, timeout: float) -> list[AlertChange]:
        """The judgement's changes; if its process died under it (killed, out of memory), judged here instead:
        the engine is deterministic, so the alerts are the same. Errors of the engine itself propagate."""
        try:
            return future.result(timeout=timeout)
        except BrokenProcessPool as error:
            self._give_up(f"the judge process died during a judgement ({error}); a new one starts at the next import",
                          retry=True)
            return judge_run(replace(imported, times={}, notes=[]))

    def shutdown(self) -> None:
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)

    def _get_executor(self) -> ProcessPoolExecutor | None:
        with self._lock:
            if self._executor is None and self._unavailable is None:
                try:
                    context = multiprocessing.get_context(START_METHOD)
                    self._executor = ProcessPoolExecutor(max_workers=1, mp_context=context)
                except (OSError, ValueError, NotImplementedError, ImportError) as error:
                    self._unavailable = f"no process pool ({error!r})"
                    log.warning("imports are judged in the request thread: %s", self._unavailable)
            return self._executor

    def _give_up(self, reason: str, *, retry: bool = False) -> None:
        """Drop the broken pool; without retry, judge every later import in-thread."""
        with self._lock:
            executor, self._executor = self._executor, None
            if not retry:
                self._unavailable = reason
        log.warning("imports are judged in the request thread: %s", reason)
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)


def in_thread() -> JudgePool:
    """A pool that judges in the caller's thread (ORPO_DASH_IMPORT_JUDGE_PROCESS=false)."""
    pool = JudgePool()
    pool._unavailable = "import_judge_process is off"
    return pool


def _done(judgement: Callable[[], list[AlertChange]]) -> Future[list[AlertChange]]:
    future: Future[list[AlertChange]] = Future()
    try:
        future.set_result(judgement())
    except Exception as error:  # noqa: BLE001 - the caller's result() raises it, as the process's would
        future.set_exception(error)
    return future
