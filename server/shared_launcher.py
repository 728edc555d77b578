"""One launcher among several dashboard processes that share a PostgreSQL database.

Left alone, every process would claim queued runs and start workers. The launch lock (a PostgreSQL
session-level advisory lock, held on a connection of its own) makes one process the launcher; the
others forward `wake` (a run was queued) and `stop` (a run should stop) to it over the fan-out channel
(server/fanout.py). When the launching process dies its connection closes and frees the lock; the next
process to try it (every LEAD_RETRY_SECONDS) becomes the launcher and starts what is queued. Workers the
dead process started keep running (each in its own session) and reconnect to whichever dashboard URL
answers when `worker_url` lists several (docs/cluster.md).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg

from server.fanout import PostgresFanout
from server.launcher import Launcher

log = logging.getLogger(__name__)

LAUNCH_LOCK_KEY = 0x6F72_706F  # "orpo": one lock per database, whatever the number of processes
LEAD_RETRY_SECONDS = 5.0


class SharedLauncher:
    """The Launcher protocol (server/launcher.py) for one of several processes on one database."""

    def __init__(self, *, conninfo: str, make_launcher: Callable[[], Launcher], fanout: PostgresFanout) -> None:
        self._conninfo = conninfo
        self._make_launcher = make_launcher
        self._fanout = fanout
        self._local: Launcher | None = None  # set once this process holds the launch lock
        self._lock_connection: psycopg.Connection[Any] | None = None
        self._mutex = threading.Lock()
        self._tried_at = -LEAD_RETRY_SECONDS
        self._closed = False
        fanout.on("wake", lambda _payload: self._local.wake() if self._local is not None else None)
        fanout.on("stop", lambda payload: self._local.stop(int(payload["stop"])) if self._local is not None else None)
        fanout.on_tick(self._keep_trying)

    @property
    def leads(self) -> bool:
        return self._local is not None

    def try_lead(self) -> bool:
        """Take the launch lock if it is free; the launcher then starts whatever is queued."""
        with self._mutex:
            if self._local is not None:
                return True
            if self._closed:
                return False
            self._tried_at = time.monotonic()
            try:
                # Named after this process, so `pg_stat_activity` shows which dashboard launches.
                connection = psycopg.connect(self._conninfo, autocommit=True,
                                             application_name=f"orpo-dash launcher {os.getpid()}")
                row = connection.execute("SELECT pg_try_advisory_lock(%s)", (LAUNCH_LOCK_KEY,)).fetchone()
            except psycopg.Error as error:
                log.warning("could not try the launch lock: %s", error)
                return False
            if not row or not row[0]:
                connection.close()
                return False
            self._lock_connection = connection
            self._local = self._make_launcher()
        log.info("this dashboard process holds the launch lock: it starts the workers of queued runs")
        self._local.wake()
        return True

    def _keep_trying(self) -> None:
        if self._local is None and time.monotonic() - self._tried_at >= LEAD_RETRY_SECONDS:
            self.try_lead()

    # ----- Launcher protocol -----
    def wake(self) -> None:
        if self._local is not None:
            self._local.wake()
        else:
            self._fanout.publish({"wake": 1})

    def stop(self, run_id: int) -> None:
        if self._local is not None:
            self._local.stop(run_id)
        else:
            self._fanout.publish({"stop": run_id})

    def is_running(self, run_id: int) -> bool:
        return self._local is not None and self._local.is_running(run_id)

    def shutdown(self) -> None:
        with self._mutex:
            self._closed = True
            local, connection = self._local, self._lock_connection
        if local is not None:
            local.shutdown()
        if connection is not None:
            connection.close()  # frees the lock for another process
