"""Live fan-out: committed points, run changes, alerts, logs and samples to subscribed browsers,
and stop commands to connected workers."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable
from typing import Any

# A subscriber that falls this many messages behind is dropped; its browser reconnects and
# catches up from the database, so nothing is lost and a slow tab cannot stall ingestion.
SUBSCRIBER_QUEUE_LIMIT = 1000


class Subscription:
    def __init__(self, hub: LiveHub, run_id: int) -> None:
        self.hub = hub
        self.run_id = run_id
        self.queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(SUBSCRIBER_QUEUE_LIMIT)

    def close(self) -> None:
        self.hub._subscribers[self.run_id].discard(self)


class LiveHub:
    """Lives on the event loop; the writer thread hands it messages with publish_threadsafe."""

    def __init__(self) -> None:
        self._subscribers: dict[int, set[Subscription]] = defaultdict(set)
        self._workers: dict[int, asyncio.Queue[dict[str, Any]]] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        # Several dashboard processes on one PostgreSQL database (server/fanout.py): a command for a
        # worker connected to another process goes there. None: this process is the only one.
        self.forward_command: Callable[[int, dict[str, Any]], None] | None = None

    # --- browsers ---
    def subscribe(self, run_id: int) -> Subscription:
        subscription = Subscription(self, run_id)
        self._subscribers[run_id].add(subscription)
        return subscription

    def has_subscribers(self, run_id: int) -> bool:
        """Safe from the writer thread: a browser that subscribes after this check reads the
        already-committed points from the database (it subscribes before reading history)."""
        return bool(self._subscribers.get(run_id))

    def publish(self, run_id: int, message: dict[str, Any] | None) -> None:
        for subscription in list(self._subscribers.get(run_id, ())):
            try:
                subscription.queue.put_nowait(message)
            except asyncio.QueueFull:
                subscription.close()
                # Make room for the sentinel so the socket handler wakes up and closes.
                while not subscription.queue.empty():
                    subscription.queue.get_nowait()
                subscription.queue.put_nowait(None)

    def publish_threadsafe(self, run_id: int, message: dict[str, Any] | None) -> None:
        """message None drops the run's subscribers: their browsers reconnect and catch up from the database."""
        if self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.publish, run_id, message)

    def drop_all_threadsafe(self) -> None:
        """Every browser reconnects and catches up from the database (live messages were missed)."""
        if self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self._drop_all)

    def _drop_all(self) -> None:
        for run_id in list(self._subscribers):
            self.publish(run_id, None)

    # --- workers ---
    def attach_worker(self, run_id: int) -> asyncio.Queue[dict[str, Any]]:
        commands: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._workers[run_id] = commands
        return commands

    def detach_worker(self, run_id: int, commands: asyncio.Queue[dict[str, Any]]) -> None:
        if self._workers.get(run_id) is commands:
            del self._workers[run_id]

    def worker_connected(self, run_id: int) -> bool:
        return run_id in self._workers

    def command_worker(self, run_id: int, message: dict[str, Any], *, forward: bool = True) -> bool:
        """Queue a command for the run's worker; False if it is not connected to this process (then,
        with several processes, it is forwarded to the others unless `forward` is False)."""
        commands = self._workers.get(run_id)
        if commands is None:
            if forward and self.forward_command is not None:
                self.forward_command(run_id, message)
            return False
        commands.put_nowait(message)
        return True

    def command_worker_threadsafe(self, run_id: int, message: dict[str, Any], *, forward: bool = True) -> None:
        if self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(lambda: self.command_worker(run_id, message, forward=forward))
