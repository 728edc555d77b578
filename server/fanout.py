"""Live fan-out across dashboard processes that share one PostgreSQL database, over LISTEN/NOTIFY.

Several `orpo-dash serve` processes on one database each hold their own websockets: a point committed
by the process a worker streams to must reach a browser subscribed on another. Every transaction of
the writer that announces something also sends a NOTIFY on CHANNEL naming the run and what changed (the
lowest new step, new alert/log/sample row ids, a run change); PostgreSQL delivers it when the
transaction commits, or never. Each process LISTENs on its own connection, in a thread, and for the
runs its browsers watch reads what changed from the database (server/services/remote_changes.py) and
publishes it to its own hub. No point travels only in a notification: after the listening connection
drops, the browsers of this process are asked to reconnect, which catches them up from the database.

The same channel carries commands for a worker connected to another process (stop, lost) and the
launcher's wake and stop (server/shared_launcher.py). SQLite dashboards are one process: none of this
exists for them (server/app.py creates it only for PostgreSQL).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from server.live import LiveHub
from server.models import LogLine, Sample
from server.services.ingest import Announcement
from server.services.remote_changes import RunChanges, SeriesCursors, read_messages

log = logging.getLogger(__name__)

# One channel per database: NOTIFY never crosses databases, so two dashboards on one server stay apart.
CHANNEL = "orpo_dash_live"
# How long the listener waits for a notification before its periodic duties (the launch lock).
LISTEN_POLL_SECONDS = 1.0
RECONNECT_SECONDS = 1.0
# Progress-only run updates are re-read at most this often per run (the committing process's rate).
RUN_REFRESH_INTERVAL = 0.5


def announcement_payload(origin: str, item: Announcement) -> str:
    """The notification for one committed batch: small (PostgreSQL's limit is 8,000 bytes), data-free."""
    payload: dict[str, Any] = {"o": origin, "r": item.run_id}
    if item.points:
        payload["p"] = min(point[0] for point in item.points)
    if item.run_changed:
        payload["u"] = 2 if item.push_now else 1
    if item.alerts:
        payload["a"] = [alert.id for alert in item.alerts]
    for key, kind in (("l", LogLine), ("s", Sample)):
        ids = [row.id for row in item.rows if isinstance(row, kind)]
        if ids:
            payload[key] = [min(ids), max(ids)]
    return json.dumps(payload, separators=(",", ":"))


class PostgresFanout:
    def __init__(self, *, engine: Engine, session_factory: sessionmaker[Session], hub: LiveHub) -> None:
        self.origin = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"  # this process: its own notifications are skipped
        self._engine = engine
        self._session_factory = session_factory
        self._hub = hub
        self._tick_callbacks: list[Callable[[], None]] = []
        # psycopg's own form of the URL, for connections that live outside the engine's pool.
        self.conninfo = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._outbox: queue.Queue[str | None] = queue.Queue()
        self._stopping = threading.Event()
        self.listening = threading.Event()
        self._cursors = SeriesCursors()
        self._run_refreshed: dict[int, float] = {}
        self._handlers: dict[str, Callable[[dict[str, Any]], None]] = {}
        self._listener = threading.Thread(target=self._listen, name="fanout-listen", daemon=True)
        self._sender = threading.Thread(target=self._send, name="fanout-send", daemon=True)

    def on(self, key: str, handler: Callable[[dict[str, Any]], None]) -> None:
        """Call handler(payload), on the listener thread, for other processes' notifications carrying `key`."""
        self._handlers[key] = handler

    def on_tick(self, callback: Callable[[], None]) -> None:
        """Call callback() about every LISTEN_POLL_SECONDS on the listener thread."""
        self._tick_callbacks.append(callback)

    def start(self) -> None:
        self._listener.start()
        self._sender.start()

    def stop(self) -> None:
        self._stopping.set()
        self._outbox.put(None)
        self._sender.join(timeout=5)
        self._listener.join(timeout=LISTEN_POLL_SECONDS + 5)

    # ----- sending -----
    def notify_committing(self, session: Session, announcements: list[Announcement]) -> None:
        """In the writer's transaction, before it commits: PostgreSQL sends these at commit, or not at all."""
        if not announcements:
            return
        if any(item.rows for item in announcements):
            session.flush()  # log and sample rows get their ids
        payloads = [announcement_payload(self.origin, item) for item in announcements]
        session.connection().exec_driver_sql(
            "SELECT pg_notify(%s, payload) FROM unnest(%s::text[]) AS payload", (CHANNEL, payloads))

    def publish(self, payload: dict[str, Any]) -> None:
        """Send a notification soon, from a background thread (never blocks the caller)."""
        self._outbox.put(json.dumps({"o": self.origin, **payload}, separators=(",", ":")))

    def run_changed(self, run_id: int) -> None:
        """A run row changed outside a worker batch (stop, rename, launch, exit, lost): tell the others."""
        self.publish({"r": run_id, "u": 2})

    def command_worker(self, run_id: int, message: dict[str, Any]) -> None:
        """For a worker that is not connected here: the process it is connected to forwards it."""
        self.publish({"c": run_id, "m": message})

    def _send(self) -> None:
        while (payload := self._outbox.get()) is not None:
            try:
                with self._engine.begin() as connection:
                    connection.exec_driver_sql("SELECT pg_notify(%s, %s)", (CHANNEL, payload))
            except Exception:  # noqa: BLE001 - the database away: the message is lost, the data is not
                log.exception("could not notify the other dashboard processes")

    # ----- listening -----
    def _listen(self) -> None:
        while not self._stopping.is_set():
            try:
                with psycopg.connect(self.conninfo, autocommit=True) as connection:
                    connection.execute(f"LISTEN {CHANNEL}")
                    self._resync()
                    self.listening.set()
                    last_tick = 0.0
                    while not self._stopping.is_set():
                        notes = list(connection.notifies(timeout=LISTEN_POLL_SECONDS, stop_after=1))
                        if notes:
                            notes += list(connection.notifies(timeout=0))  # whatever else has arrived: one round
                            self._handle([note.payload for note in notes])
                        if time.monotonic() - last_tick >= LISTEN_POLL_SECONDS:
                            last_tick = time.monotonic()
                            for callback in self._tick_callbacks:
                                callback()
            except Exception:  # noqa: BLE001 - the listener must outlive a database restart
                if self._stopping.is_set():
                    return
                log.exception("listening for other dashboard processes failed; reconnecting in %s s", RECONNECT_SECONDS)
            self.listening.clear()
            self._stopping.wait(RECONNECT_SECONDS)

    def _resync(self) -> None:
        """(Re)connected: notifications sent meanwhile are lost, so every browser here reconnects and
        catches up from the database, and the cursors start again from the next notifications."""
        self._cursors.forget_all()
        self._hub.drop_all_threadsafe()

    def _handle(self, raw_payloads: list[str]) -> None:
        changes: dict[int, RunChanges] = {}
        for raw in raw_payloads:
            try:
                payload = json.loads(raw)
            except ValueError:
                log.warning("ignored a malformed notification on %s: %.200s", CHANNEL, raw)
                continue
            if not isinstance(payload, dict) or payload.get("o") == self.origin:
                continue
            if "r" in payload:
                changes.setdefault(int(payload["r"]), RunChanges()).merge(payload)
            if "c" in payload:
                self._hub.command_worker_threadsafe(int(payload["c"]), payload["m"], forward=False)
            for key, handler in self._handlers.items():
                if key in payload:
                    handler(payload)
        for run_id, run_changes in changes.items():
            self._publish_changes(run_id, run_changes)
        for run_id in self._cursors.watched():
            if not self._hub.has_subscribers(run_id):
                self._cursors.forget(run_id)  # re-started from the next notification once watched again

    def _publish_changes(self, run_id: int, changes: RunChanges) -> None:
        if not self._hub.has_subscribers(run_id):
            self._cursors.forget(run_id)
            return
        now = time.monotonic()
        with_run = changes.run_changed and (
            changes.push_now or bool(changes.alert_ids)
            or now - self._run_refreshed.get(run_id, 0.0) > RUN_REFRESH_INTERVAL)
        if with_run:
            self._run_refreshed[run_id] = now
        try:
            with self._session_factory() as session:
                messages = read_messages(session=session, run_id=run_id, changes=changes, cursors=self._cursors,
                                         with_run=with_run)
        except Exception:  # noqa: BLE001 - its browsers reconnect and catch up from the database instead
            log.exception("reading run %s's changes for this process's browsers failed", run_id)
            self._cursors.forget(run_id)
            self._hub.publish_threadsafe(run_id, None)
            return
        for message in messages:
            self._hub.publish_threadsafe(run_id, message)
