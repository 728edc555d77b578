"""The single database writer: every write goes through one thread, in batched transactions.

Like datasette's execute_write_fn: concurrent workers and page actions queue their writes here,
so SQLite's "database is locked" never reaches a user, and ingestion batches from many workers
share one commit.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy.orm import Session, sessionmaker

from server.services.ingest import Announcement, IngestState, apply_batch

log = logging.getLogger(__name__)
T = TypeVar("T")

# How many queued ingestion batches may share one transaction.
MAX_COALESCED = 64
# How long a request waits for its write before it answers 503 (WriterBusy) instead of hanging.
WRITE_WAIT_SECONDS = 30.0


class WriterBusy(Exception):
    """A write waited longer than the writer's wait_timeout. It stays queued and may still be made."""


@dataclass
class _Write:
    fn: Callable[[Session], Any]
    future: Future[Any]
    is_batch: bool
    run_id: int | None = None  # a batch's run: the derived state to drop if its transaction fails
    awaited: bool = True  # False once its waiter cancelled the future: the write still happens, unanswered

    def claim(self) -> None:
        """Mark the future running, so no waiter can cancel it any more (asyncio.wrap_future cancels it
        when the awaiting task is cancelled, e.g. a worker socket at shutdown). A write whose waiter
        already gave up is still made: the data matters more than who stopped listening, and a
        batch's seq makes its resend harmless."""
        self.awaited = self.future.set_running_or_notify_cancel()

    def settle(self, result: Any = None, error: BaseException | None = None) -> None:
        if not self.awaited:
            return
        if error is not None:
            self.future.set_exception(error)
        else:
            self.future.set_result(result)


class DatabaseWriter:
    def __init__(
        self,
        session_factory: sessionmaker[Session],
        *,
        on_committed: Callable[[list[Announcement]], None],
        before_commit: Callable[[Session, list[Announcement]], None] | None = None,
    ) -> None:
        self._session_factory = session_factory
        self._on_committed = on_committed
        # Runs inside a transaction that produced announcements, just before it commits (PostgreSQL's
        # NOTIFY to other dashboard processes, server/fanout.py: delivered at commit, or never).
        self._before_commit = before_commit
        self._queue: queue.Queue[_Write | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="db-writer", daemon=True)
        self.state = IngestState()
        self.wait_timeout = WRITE_WAIT_SECONDS

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)

    def submit(self, fn: Callable[[Session], T]) -> Future[T]:
        """Run fn(session) in its own transaction on the writer thread; the future holds its result."""
        future: Future[T] = Future()
        self._queue.put(_Write(fn, future, is_batch=False))
        return future

    def write(self, fn: Callable[[Session], T]) -> T:
        """submit(fn) and wait for its result, at most wait_timeout seconds (then WriterBusy)."""
        try:
            return self.submit(fn).result(timeout=self.wait_timeout)
        except FutureTimeout as error:
            raise WriterBusy(f"the database writer did not get to this write within {self.wait_timeout:g} s") from error

    def forget_run(self, run_id: int) -> None:
        """Drop a deleted run's derived ingestion state. Queued, not done here: the writer thread owns
        that state, and a batch of the run already queued must see it until the run's delete commits."""
        self.submit(lambda _session: self.state.forget(run_id))

    def submit_batch(self, run_id: int, message: dict[str, Any]) -> Future[Announcement | None]:
        """Queue a worker batch; the future resolves once it is committed (then it may be acknowledged)."""
        future: Future[Announcement | None] = Future()

        def write(session: Session) -> Announcement | None:
            return apply_batch(session=session, run_id=run_id, message=message, state=self.state)

        self._queue.put(_Write(write, future, is_batch=True, run_id=run_id))
        return future

    def _loop(self) -> None:
        while True:
            try:
                if not self._serve_next():
                    return
            except Exception:  # noqa: BLE001 - a dead writer thread would silently stop every write
                log.exception("the database writer hit an unexpected error; it keeps serving")

    def _serve_next(self) -> bool:
        """Run the next write, or the next batches coalesced into one transaction. False: stop."""
        item = self._queue.get()
        if item is None:
            return False
        item.claim()
        if not item.is_batch:
            self._run_alone(item)
            return True
        group = [item]
        while len(group) < MAX_COALESCED:
            try:
                nxt = self._queue.get_nowait()
            except queue.Empty:
                break
            if nxt is None:
                self._run_group(group)
                return False
            nxt.claim()
            if not nxt.is_batch:
                self._run_group(group)
                self._run_alone(nxt)
                return True
            group.append(nxt)
        self._run_group(group)
        return True

    def _run_alone(self, item: _Write) -> None:
        try:
            with self._session_factory() as session, session.begin():
                result = item.fn(session)
                if self._before_commit is not None and isinstance(result, Announcement):
                    self._before_commit(session, [result])
        except BaseException as error:  # noqa: BLE001 - the caller's future carries it
            if item.run_id is not None:
                self.state.forget(item.run_id)  # its derived state may have seen rows that were rolled back
            item.settle(error=error)
            return
        self._announce([result] if isinstance(result, Announcement) else [])
        item.settle(result)

    def _run_group(self, group: list[_Write]) -> None:
        try:
            with self._session_factory() as session, session.begin():
                results = [item.fn(session) for item in group]
                if self._before_commit is not None:
                    self._before_commit(session, [result for result in results if result is not None])
        except BaseException:  # noqa: BLE001
            # One bad batch must not sink its neighbours: retry each in its own transaction.
            # Derived state of these runs may hold rows from the rolled-back transaction; other runs' is
            # untouched (it is restored from its saved state, not rebuilt, but a run's batch must not cost others).
            for item in group:
                if item.run_id is not None:
                    self.state.forget(item.run_id)
            for item in group:
                self._run_alone(item)
            return
        self._announce([result for result in results if result is not None])
        for item, result in zip(group, results, strict=True):
            item.settle(result)

    def _announce(self, announcements: list[Announcement]) -> None:
        if not announcements:
            return
        try:
            self._on_committed(announcements)
        except Exception:  # noqa: BLE001 - a broken subscriber must not stop writes
            log.exception("announcing committed batches failed")
