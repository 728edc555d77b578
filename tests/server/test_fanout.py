"""Two real dashboard processes on one real PostgreSQL database (server/fanout.py): what a worker
streams to one reaches browsers on the other, commands cross over, one process launches, and a
kill -9 of the process a worker streams to loses and duplicates nothing."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from websockets.sync.client import connect

from server.shared_launcher import LAUNCH_LOCK_KEY
from tests.conftest import TEST_PATH_ROOTS, LiveServer, free_port
from trainer.streaming import StreamingReporter

METRICS = [f"m{i}" for i in range(15)]
# Short enough that a run the other process did not hear from for a few seconds would be marked lost.
SHORT_LIVENESS = {"ORPO_DASH_WORKER_TIMEOUT": "3"}


def _start(tmp_path: Path, name: str, database_url: str) -> LiveServer:
    data_dir = tmp_path / name
    data_dir.mkdir()
    port = free_port()
    server = LiveServer(url=f"http://127.0.0.1:{port}", port=port, database_url=database_url, data_dir=data_dir,
                        extra_env={**TEST_PATH_ROOTS, **SHORT_LIVENESS})
    server.start()
    return server


@pytest.fixture(scope="module")
def two_servers(tmp_path_factory: pytest.TempPathFactory, module_postgres_url: str) -> Iterator[tuple[LiveServer, LiveServer]]:
    """Shared by this module's tests (starting two processes is most of their time); the last test kills A."""
    tmp_path = tmp_path_factory.mktemp("fanout")
    first = _start(tmp_path, "a", module_postgres_url)  # one after the other: each applies the migrations first
    second = _start(tmp_path, "b", module_postgres_url)
    try:
        yield first, second
    finally:
        first.stop()
        second.stop()


class Browser:
    """A run page's websocket: subscribes, then records every frame."""

    def __init__(self, server: LiveServer, run_id: int) -> None:
        self.frames: list[dict] = []
        self.steps: dict[int, set[str]] = {}
        self.closed_code: int | None = None
        self._url = server.url.replace("http://", "ws://") + f"/ws/runs/{run_id}"
        self._subscribed = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        assert self._subscribed.wait(10)

    def _read(self) -> None:
        with connect(self._url, max_size=None) as ws:
            ws.send(json.dumps({"type": "subscribe", "after_step": -1}))
            self._subscribed.set()
            while not self._stop.is_set():
                try:
                    frame = json.loads(ws.recv(timeout=0.2))
                except TimeoutError:
                    continue
                self.frames.append(frame)
                for step, name, _value, _time in frame.get("points", []):
                    self.steps.setdefault(step, set()).add(name)

    def wait_for(self, condition, timeout: float = 30) -> bool:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return True
            time.sleep(0.05)
        return False

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


def _register(server: LiveServer, dataset: Path) -> tuple[int, str]:
    body = server.api("POST", "/api/runs", params={"launch": "false"}, json={"dataset": str(dataset)}).json()
    return body["id"], body["worker_token"]


def _stored(database_url: str, run_id: int) -> tuple[int, int, int]:
    """(rows, distinct (name, step), last committed seq) of a run, read from PostgreSQL itself."""
    with psycopg.connect(database_url.replace("postgresql+psycopg://", "postgresql://")) as connection:
        rows, distinct = connection.execute(
            "SELECT count(*), count(DISTINCT (name, step)) FROM metric_points WHERE run_id = %s", (run_id,)).fetchone()
        (last_seq,) = connection.execute("SELECT last_seq FROM runs WHERE id = %s", (run_id,)).fetchone()
    return rows, distinct, last_seq


@pytest.mark.slow
def test_what_one_process_commits_reaches_browsers_on_the_other(
        two_servers: tuple[LiveServer, LiveServer], tiny_dataset_file: Path) -> None:
    a, b = two_servers
    run_id, token = _register(a, tiny_dataset_file)
    browser = Browser(b, run_id)  # watching on B
    reporter = StreamingReporter(a.url, run_id, token, spill_path=a.data_dir / "spill.jsonl")  # streaming to A
    try:
        assert reporter.connected.wait(10)
        reporter.log("hello from the worker")
        for step in range(40):
            reporter.metrics(step, {name: step + i / 100 for i, name in enumerate(METRICS)})
            time.sleep(0.02)
        assert browser.wait_for(lambda: len(browser.steps) == 40 and all(len(n) == 15 for n in browser.steps.values())), \
            f"browser on B saw {len(browser.steps)} of 40 steps"
        assert browser.wait_for(lambda: any(f["type"] == "logs" and f["lines"][0]["text"] == "hello from the worker"
                                            for f in browser.frames))

        # A stop asked on B reaches the worker connected to A.
        assert b.api("POST", f"/api/runs/{run_id}/stop").status_code == 200
        assert browser.wait_for(reporter.stop_requested, timeout=10), "the stop asked on B never reached the worker on A"

        # B hears nothing from this worker itself, yet must not mark its run lost (worker_timeout 3 s):
        # A persists when it last heard from it.
        time.sleep(4.5)
        assert b.api("GET", f"/api/runs/{run_id}").json()["status"] == "running"

        reporter.status("completed", total_steps=40)
        assert browser.wait_for(lambda: any(f["type"] == "run" and f["run"]["status"] == "completed" for f in browser.frames))
    finally:
        reporter.close(timeout=20)
        browser.close()
    assert _stored(a.database_url, run_id)[:2] == (40 * 15, 40 * 15)


def _launchers(database_url: str) -> list[str]:
    """The connections holding the launch lock, by application name (it names the process)."""
    with psycopg.connect(database_url.replace("postgresql+psycopg://", "postgresql://")) as connection:
        rows = connection.execute(
            "SELECT activity.application_name FROM pg_locks AS lock JOIN pg_stat_activity AS activity USING (pid) "
            "WHERE lock.locktype = 'advisory' AND lock.granted AND lock.objid = %s", (LAUNCH_LOCK_KEY,)).fetchall()
    return [name for (name,) in rows]


@pytest.mark.slow
def test_kill_9_of_the_process_a_worker_streams_to_loses_and_duplicates_nothing(
        two_servers: tuple[LiveServer, LiveServer], tiny_dataset_file: Path) -> None:
    a, b = two_servers
    assert a.process is not None and b.process is not None
    assert _launchers(a.database_url) == [f"orpo-dash launcher {a.process.pid}"]  # one launcher for the two
    run_id, token = _register(b, tiny_dataset_file)
    browser = Browser(b, run_id)
    reporter = StreamingReporter(f"{a.url},{b.url}", run_id, token, spill_path=b.data_dir / "spill.jsonl")
    steps = 400
    try:
        assert reporter.connected.wait(10) and reporter.server_url == a.url
        for step in range(steps):
            if step == steps // 3:
                a.kill()  # mid-stream, batches in flight
            reporter.metrics(step, {name: step + i / 100 for i, name in enumerate(METRICS)})
            time.sleep(0.01)
        reporter.status("completed", total_steps=steps)
    finally:
        reporter.close(timeout=60)
    assert reporter.server_url == b.url
    assert reporter.undelivered_batches == 0 and reporter.dropped_batches == 0 and reporter.refused is None
    rows, distinct, last_seq = _stored(b.database_url, run_id)
    assert rows == distinct == steps * len(METRICS)  # every point once
    assert last_seq == reporter.delivered_batches  # every batch committed once, acknowledged once
    try:
        assert browser.wait_for(lambda: len(browser.steps) == steps and all(len(n) == 15 for n in browser.steps.values())), \
            f"the browser on the survivor saw {len(browser.steps)} of {steps} steps"
        assert browser.wait_for(lambda: any(f["type"] == "run" and f["run"]["status"] == "completed" for f in browser.frames))
    finally:
        browser.close()
    # The survivor takes over launching once the dead process's connection (and its lock) is gone.
    survivor = [f"orpo-dash launcher {b.process.pid}"]
    deadline = time.monotonic() + 15
    while _launchers(b.database_url) != survivor and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _launchers(b.database_url) == survivor


def test_a_sqlite_dashboard_starts_no_listener(client) -> None:  # type: ignore[no-untyped-def]
    """SQLite is one process's: no fan-out object, no listening thread, the writer adds no NOTIFY."""
    assert client.app.state.fanout is None
    assert client.app.state.writer._before_commit is None
    assert not [thread.name for thread in threading.enumerate() if thread.name.startswith("fanout")]
