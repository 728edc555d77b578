"""App factory: wires settings, database, the single writer, live fan-out, the launcher and routes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.middleware.sessions import SessionMiddleware

from server.auth import SESSION_COOKIE, NotAuthenticated, refuse_unauthenticated, session_secret
from server.db import make_engine, make_session_factory
from server.launcher import LocalProcessLauncher, NoLauncher
from server.live import LiveHub
from server.login_throttle import LoginThrottle
from server.models import Run
from server.notify import WebhookNotifier
from server.request_limits import RequestLimits
from server.routes import (
    account_pages,
    api_disk,
    api_docs,
    api_files,
    api_imports,
    api_launcher,
    api_runs,
    api_sweeps,
    pages,
    ws_browser,
    ws_worker,
)
from server.schemas import AlertPublic
from server.services import runs as run_service
from server.services.import_judge import JudgePool
from server.services.import_judge import in_thread as judge_in_thread
from server.services.ingest import Announcement
from server.services.worker_liveness import LastHeard
from server.settings import Settings, get_settings
from server.templating import STATIC_DIR
from server.validation_errors import explain_validation_error
from server.web_security import WebSecurityMiddleware
from server.worker_watch import persist_last_heard, watch_workers
from server.writer import DatabaseWriter, WriterBusy

log = logging.getLogger(__name__)

# Progress-only run updates (step counters) are sent to browsers at most this often per run.
RUN_ANNOUNCE_INTERVAL = 0.5
# Seconds a client is told to wait before retrying when the database writer is busy.
WRITER_BUSY_RETRY_AFTER = 5


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.hub.loop = asyncio.get_running_loop()
        app.state.writer.start()
        if fanout is None:
            app.state.launcher = _make_launcher(app, settings)
        else:
            app.state.launcher = _share_launcher(app, settings, fanout)
            fanout.start()
        app.state.launcher.wake()  # runs queued while the dashboard was down
        watcher = asyncio.create_task(watch_workers(app))
        try:
            yield
        finally:
            watcher.cancel()
            app.state.launcher.shutdown()
            # The next dashboard judges the runs left running from their last sign of life: store it.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(persist_last_heard(app), timeout=5)
            if fanout is not None:
                fanout.stop()
            app.state.writer.stop()
            app.state.judge_pool.shutdown()
            if notifier is not None:
                notifier.close()
            app.state.engine.dispose()

    app = FastAPI(
        title="ORPO dashboard",
        summary="Start ORPO fine-tuning runs, watch their metrics live, get told about ORPO pitfalls.",
        version="0.1.0",
        lifespan=lifespan,
        # Served by server/routes/api_docs.py instead, behind the caller dependency.
        openapi_url=None, docs_url=None, redoc_url=None,
    )
    app.add_exception_handler(RequestValidationError, explain_validation_error)
    app.add_exception_handler(WriterBusy, _writer_busy)
    app.add_middleware(RequestLimits, max_body_bytes=settings.max_request_bytes,
                       max_import_bytes=settings.max_import_bytes)
    app.add_exception_handler(NotAuthenticated, refuse_unauthenticated)  # type: ignore[arg-type]
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.resolved_database_url)
    app.state.settings = settings
    app.state.engine = engine
    app.state.session_factory = make_session_factory(engine)
    app.state.hub = LiveHub()
    app.state.last_heard = LastHeard()
    app.state.login_throttle = LoginThrottle(max_failures=settings.login_max_failures,
                                             window=settings.login_failure_window_seconds)
    app.state.launcher = NoLauncher()
    # Several dashboard processes may share a PostgreSQL database; SQLite is one process's, with no listener.
    fanout = _make_fanout(app) if engine.dialect.name == "postgresql" else None
    app.state.fanout = fanout
    last_announced: dict[int, float] = {}
    announce_lock = threading.Lock()

    def publish_run(run_id: int) -> None:
        with app.state.session_factory() as session:
            run = session.get(Run, run_id)
            if run is None:
                return
            public = run_service.public_run(session=session, run=run)
        app.state.hub.publish_threadsafe(run_id, {"type": "run", "run": public.model_dump(mode="json")})

    def announce_run(run_id: int) -> None:
        """A run changed outside a worker batch: its browsers here, and on the other processes, hear of it."""
        publish_run(run_id)
        if fanout is not None:
            fanout.run_changed(run_id)

    def on_committed(announcements: list[Announcement]) -> None:
        hub = app.state.hub
        for item in announcements:
            if item.points and hub.has_subscribers(item.run_id):  # nobody watching: skip building the frame
                points = [[s, n, v if math.isfinite(v) else None, t] for s, n, v, t in item.points]
                hub.publish_threadsafe(item.run_id, {"type": "points", "points": points})
            for alert in item.alerts:
                public_alert = _alert_json(alert)
                hub.publish_threadsafe(item.run_id, {"type": "alert", "alert": public_alert})
                if notifier is not None and public_alert["state"] == "open":
                    notifier.alert_opened(run_id=item.run_id, run_name=_run_name(item.run_id), alert=public_alert)
            if item.stop_worker:
                # A sweep's stop_on_critical asked the run to stop: tell its worker, and its launcher
                # (from another thread: a launcher may be waiting on this writer while holding its lock).
                hub.command_worker_threadsafe(item.run_id, {"type": "stop"})
                threading.Thread(target=app.state.launcher.stop, args=(item.run_id,), daemon=True).start()
            if item.logs:
                hub.publish_threadsafe(item.run_id, {"type": "logs", "lines": item.logs})
            if item.samples:
                hub.publish_threadsafe(item.run_id, {"type": "samples", "samples": item.samples})
            now = time.monotonic()
            with announce_lock:
                due = item.push_now or item.alerts or now - last_announced.get(item.run_id, 0) > RUN_ANNOUNCE_INTERVAL
                if item.run_changed and due:
                    last_announced[item.run_id] = now
                else:
                    due = False
            if due:
                publish_run(item.run_id)  # other processes heard of it from the batch's own notification

    def _run_name(run_id: int) -> str:
        with app.state.session_factory() as session:
            run = session.get(Run, run_id)
            return run.name if run is not None else str(run_id)

    notifier = WebhookNotifier(settings.alert_webhook_url, _public_url(settings)) if settings.alert_webhook_url else None
    app.state.writer = DatabaseWriter(app.state.session_factory, on_committed=on_committed,
                                      before_commit=fanout.notify_committing if fanout is not None else None)
    app.state.announce_run = announce_run
    app.state.judge_pool = JudgePool() if settings.import_judge_process else judge_in_thread()

    app.include_router(account_pages.public_router)
    app.include_router(account_pages.router)
    app.include_router(api_docs.router)
    app.include_router(api_runs.router)
    app.include_router(api_sweeps.router)
    app.include_router(api_files.router)
    app.include_router(api_disk.router)
    app.include_router(api_launcher.router)
    app.include_router(api_imports.router)
    app.include_router(ws_worker.router)
    app.include_router(ws_browser.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    _add_web_security(app, settings)
    return app


def _add_web_security(app: FastAPI, settings: Settings) -> None:
    """Middleware runs outermost-last: the host/origin checks see every request before the session is read."""
    if settings.auth:
        app.add_middleware(
            SessionMiddleware, secret_key=session_secret(settings), session_cookie=SESSION_COOKIE,
            max_age=settings.session_max_age_seconds, same_site="lax", https_only=settings.secure_cookies,
        )
    app.add_middleware(WebSecurityMiddleware, trusted_hosts=settings.trusted_hosts)


def _make_launcher(app: FastAPI, settings: Settings) -> Any:
    if not settings.launch_workers:
        return NoLauncher()
    # What every launcher needs; each adds its own settings below.
    common: dict[str, Any] = dict(
        writer=app.state.writer, runs_dir=settings.runs_dir, max_concurrent=settings.max_concurrent_runs,
        python=settings.worker_python, model_cache_dir=settings.model_cache_dir,
        issue_token=lambda _session, run: run_service.rotate_worker_token(run), on_run_changed=app.state.announce_run,
    )
    if settings.launcher == "ray":
        # Imported only when chosen: the other launchers never need the `ray` extra.
        from server.launchers.ray_jobs import RayJobsLauncher

        return RayJobsLauncher(
            **common, worker_url=_worker_url(settings), ray_address=settings.ray_address,
            cpus_per_run=settings.ray_cpus_per_run, runtime_env=settings.ray_runtime_env,
            poll_seconds=settings.ray_poll_seconds,
        )
    return LocalProcessLauncher(**common, server_url=_worker_url(settings))


def _make_fanout(app: FastAPI) -> Any:
    # Imported only for PostgreSQL: the SQLite path loads no psycopg and starts no thread for it.
    from server.fanout import PostgresFanout

    fanout = PostgresFanout(engine=app.state.engine, session_factory=app.state.session_factory, hub=app.state.hub)
    app.state.hub.forward_command = fanout.command_worker
    return fanout


def _share_launcher(app: FastAPI, settings: Settings, fanout: Any) -> Any:
    """With several processes on one database only the holder of the launch lock starts workers."""
    if not settings.launch_workers:
        return NoLauncher()
    from server.shared_launcher import SharedLauncher

    launcher = SharedLauncher(conninfo=fanout.conninfo, make_launcher=lambda: _make_launcher(app, settings), fanout=fanout)
    launcher.try_lead()
    return launcher


async def _writer_busy(request: Request, exc: Exception) -> JSONResponse:
    """503 instead of a request that hangs behind a stuck write."""
    return JSONResponse(
        status_code=503,
        headers={"Retry-After": str(WRITER_BUSY_RETRY_AFTER)},
        content={"detail": f"The database writer is busy ({exc}). Retry in a moment; reload first, "
                           "since the change is still queued and may yet be applied."},
    )


def _public_url(settings: Settings) -> str:
    """How workers and links on this machine reach the dashboard."""
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "localhost") else settings.host
    return f"http://{host}:{settings.port}"


def _worker_url(settings: Settings) -> str:
    """How workers reach the dashboard: `worker_url` when they run on other machines."""
    urls = [url.strip().rstrip("/") for url in settings.worker_url.split(",") if url.strip()]
    return ",".join(urls) or _public_url(settings)


def _alert_json(alert: Any) -> dict[str, Any]:
    return AlertPublic.model_validate(alert).model_dump(mode="json")
