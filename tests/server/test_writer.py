"""The single database writer keeps serving when a waiter gives up on its write."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.orm import sessionmaker

from server.writer import DatabaseWriter


def test_a_write_whose_waiter_was_cancelled_is_still_made_and_the_writer_lives_on(tmp_path: Path) -> None:
    # At shutdown uvicorn cancels the worker sockets' handlers, and asyncio.wrap_future cancels the
    # write each was awaiting. The writer thread used to die on that future (InvalidStateError), so
    # nothing after it was stored: a run stopped by the shutdown stayed "running".
    engine = create_engine(f"sqlite:///{tmp_path / 'w.sqlite3'}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (x INTEGER)"))
    writer = DatabaseWriter(sessionmaker(engine), on_committed=lambda announcements: None)
    writer.start()
    try:
        gate = threading.Event()
        busy = writer.submit(lambda session: gate.wait(10))  # holds the writer so the next write queues

        async def give_up() -> None:
            waiting = asyncio.ensure_future(asyncio.wrap_future(
                writer.submit(lambda session: session.execute(text("INSERT INTO t VALUES (1)")))))
            await asyncio.sleep(0.05)
            waiting.cancel()
            await asyncio.gather(waiting, return_exceptions=True)

        # In a thread of its own: the page tests' Playwright leaves an event loop running on this one.
        waiter = threading.Thread(target=asyncio.run, args=(give_up(),))
        waiter.start()
        waiter.join(timeout=10)
        gate.set()
        assert busy.result(timeout=10) is True
        count = writer.submit(lambda session: session.execute(text("SELECT count(*) FROM t")).scalar_one())
        assert count.result(timeout=10) == 1
    finally:
        writer.stop()
        engine.dispose()
