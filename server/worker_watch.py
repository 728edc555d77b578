"""The background loop that notices hung, paused, killed or unreachable workers: every heartbeat
interval it persists when workers were last heard from and marks `lost` the running runs that have
been silent for worker_timeout (the rule lives in server/services/worker_liveness.py). Its first round
runs as the dashboard starts, so the runs a previous dashboard left `running` are reconciled at once,
on the same rule (their silence includes the time no dashboard was up)."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from orpo_dash import protocol
from server.services import run_status
from server.services.spill_delivery import deliver_spill_files_left_by
from server.services.worker_liveness import SilentRun, log_tail, persist, silent_runs

log = logging.getLogger(__name__)


async def watch_workers(app: Any) -> None:
    settings = app.state.settings
    # Persisting every sixth of the timeout keeps a restarted dashboard's view at most that stale,
    # for one small transaction every 10 s by default, however many workers beat.
    persist_every = max(settings.heartbeat_seconds, settings.worker_timeout / 6)
    persisted = time.monotonic()  # nothing heard yet: the first round only checks
    while True:
        try:
            if time.monotonic() - persisted >= persist_every:
                await persist_last_heard(app)
                persisted = time.monotonic()
            await check_workers(app)
        except Exception:  # one failed round (database away) must not end the watching
            log.exception("checking on workers failed; trying again in %s s", settings.heartbeat_seconds)
        await asyncio.sleep(settings.heartbeat_seconds)


async def persist_last_heard(app: Any) -> None:
    heard = app.state.last_heard.snapshot()
    if app.state.engine.dialect.name == "sqlite":
        # One writer per SQLite file: through the writer's queue, like every other write.
        await asyncio.wrap_future(app.state.writer.submit(lambda session: persist(session=session, heard=heard)))
        return

    # PostgreSQL takes concurrent writers. Behind a long ingest queue this would reach the database late,
    # and another dashboard process sharing it would take a busy run's worker for lost meanwhile.
    def write() -> None:
        with app.state.session_factory() as session, session.begin():
            persist(session=session, heard=heard)

    await asyncio.to_thread(write)


async def check_workers(app: Any) -> None:
    """Mark lost every running run whose worker has been silent for worker_timeout."""
    state = app.state
    last_heard = state.last_heard

    def read_silent() -> list[SilentRun]:
        with state.session_factory() as session:
            return silent_runs(session=session, last_heard=last_heard, timeout=state.settings.worker_timeout)

    for silent in await asyncio.to_thread(read_silent):
        await _give_up_on(app, silent)


async def _give_up_on(app: Any, silent: SilentRun) -> None:
    state = app.state
    timeout = state.settings.worker_timeout
    run_id = silent.run_id
    if not state.launcher.is_running(run_id):
        # A worker that finished while the dashboard was down left its end (points, final status) in a
        # spill file next to its checkpoints: deliver it before calling the run lost.
        delivered = await asyncio.to_thread(deliver_spill_files_left_by, config=silent.config, run_id=run_id,
                                            writer=state.writer, cwd=Path.cwd())
        if delivered:
            await asyncio.to_thread(state.announce_run, run_id)
            return  # judged again next round, on what the spill file said

    def mark(session: Session) -> bool:
        heard = state.last_heard.last(run_id)
        if heard is not None and time.time() - heard <= timeout:
            return False  # it spoke up while we were looking
        tail = log_tail(session=session, run_id=run_id)
        return run_status.mark_lost(session=session, run_id=run_id, last_seen=silent.last_seen,
                                    silence=silent.silence, timeout=timeout, log_tail=tail)

    if not await asyncio.wrap_future(state.writer.submit(mark)):
        return
    log.warning("run %s: marked lost, nothing heard from its worker since %s", run_id, silent.last_seen)
    await asyncio.to_thread(state.announce_run, run_id)
    # If it is still connected (paused, say), it reads this once it runs again; a local process is also
    # asked to stop (and killed if it never does), which frees its slot for the queue.
    state.hub.command_worker(run_id, protocol.lost(run_id, timeout))
    state.launcher.stop(run_id)
