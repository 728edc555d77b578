"""StreamingReporter: delivers a run's metrics, status, logs and samples to the dashboard over its
worker websocket without ever blocking the training loop and without losing a point the server can
store. Every message and the spill file are built by `orpo_dash.protocol` (docs/protocol.md).

- `metrics()` only appends to an in-memory deque (a few microseconds); a background thread batches
  by size and time, numbers each batch, and keeps it until the server acks it (acks come after
  commit). A batch the server says it can never store (`bad_batch`) is dropped, not resent forever.
- Disconnected: training goes on; points pile up in memory and past a bound the oldest half spill
  to a local file. On reconnect the server's `welcome` says what it already committed; the rest,
  spilled lines first, is resent in order.
- At exit whatever could not be delivered in a bounded wait stays in the spill file, which
  `orpo-dash upload SPILL_FILE` (upload_spill_file) delivers later, registering the run first if
  it never was.
- The same thread sends a heartbeat whenever it has sent nothing for the interval the dashboard asks
  for, so a worker busy in a long eval, generation or checkpoint write is not taken for a hung one.
- Told its run is `lost` (the dashboard stopped hearing from it), it asks training to stop and still
  delivers what it holds. Told its run has ended (`run_ended`), it settles what was committed and
  drops the rest: that run's token writes nothing more.

Imports no torch and nothing of the server.
"""

from __future__ import annotations

import collections
import itertools
import json
import math
import os
import socket
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

import httpx
import orjson
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.sync.client import ClientConnection, connect

from orpo_dash.protocol import (
    API_TOKEN_ENV,
    WORKER_PATH,
    batch,
    batch_content,
    heartbeat,
    hello,
    phase,
    read_spill_file,
    spill_file_name,
    spill_header,
    wire_points,
)

FLUSH_INTERVAL = 0.1  # seconds between batches when points trickle in
MAX_BATCH_POINTS = 5000  # a batch is sent at once when this many points wait
MAX_IN_FLIGHT = 32  # unacknowledged batches on the wire before the sender waits for acks
MEMORY_BOUND_POINTS = 500_000  # past this many undelivered points, the oldest go to the spill file
HEARTBEAT_INTERVAL = 5.0  # until the dashboard's welcome says otherwise (its heartbeat_seconds)
RECONNECT_BACKOFF = (0.2, 0.5, 1.0, 2.0, 5.0)
CONNECT_TIMEOUT = 5.0  # seconds one websocket connection attempt may take to open
# At close, how long an upload keeps retrying a dashboard that has never answered.
ABSENT_SERVER_GRACE_SECONDS = 5.0
# Connection problems that mean "try again later", never "stop training".
TRANSIENT = (OSError, ConnectionClosed, InvalidHandshake, TimeoutError, httpx.HTTPError)
# The subset that means nothing answers at that address at all (the dashboard is not running).
UNREACHABLE = (ConnectionRefusedError, socket.gaierror, httpx.ConnectError, InvalidURI)


class ProtocolRefused(RuntimeError):
    """The server refused this worker (bad token, unknown run, protocol version): retrying cannot help."""


class RunEnded(ProtocolRefused):
    """The run has ended; batches up to `acked_seq` were committed, later ones never will be."""

    def __init__(self, message: str, acked_seq: int) -> None:
        super().__init__(message)
        self.acked_seq = acked_seq


def websocket_url(server_url: str, run_id: int) -> str:
    base = server_url.rstrip("/")
    if base.startswith("https://"):
        base = "wss://" + base[len("https://"):]
    elif base.startswith("http://"):
        base = "ws://" + base[len("http://"):]
    return base + WORKER_PATH.format(run_id=run_id)


def register_run(
    server_url: str, config: Mapping[str, Any], name: str | None, *, timeout: float = 10.0, api_token: str | None = None,
) -> tuple[int, str]:
    """Create the run on the dashboard for an external worker; returns (run id, worker token).

    `api_token` is the user's personal token, needed by a dashboard with auth on; the worker token
    that comes back is what the worker socket takes from then on.
    """
    body = dict(config)
    if name:
        body["name"] = name
    headers = {"Authorization": f"Bearer {api_token}"} if api_token else {}
    response = httpx.post(f"{server_url.rstrip('/')}/api/runs", params={"launch": "false"}, json=body,
                          headers=headers, timeout=timeout)
    if response.status_code == 401:
        raise ProtocolRefused(f"the dashboard at {server_url} requires a login: create a personal API token on its "
                              f"Account page and pass --token TOKEN or set {API_TOKEN_ENV}")
    if response.status_code == 403:
        raise ProtocolRefused(f"the dashboard refused to start the run: {response.json().get('detail')}")
    if response.status_code == 422:
        raise ProtocolRefused(f"the dashboard rejected the run config: {response.json().get('detail')}")
    response.raise_for_status()
    payload = response.json()
    return int(payload["id"]), str(payload["worker_token"])


class StreamingReporter:
    """A trainer Reporter (trainer/reporting.py) that streams to the dashboard."""

    def __init__(
        self,
        server_url: str,
        run_id: int | None,
        token: str | None,
        *,
        spill_path: str | os.PathLike[str] | None = None,
        config: Mapping[str, Any] | None = None,
        name: str | None = None,
        memory_bound_points: int = MEMORY_BOUND_POINTS,
        flush_interval: float = FLUSH_INTERVAL,
        patient_close: bool = False,
        api_token: str | None = None,
    ) -> None:
        if run_id is None and config is None:
            raise ValueError("a StreamingReporter without a run id needs the run config to register the run")
        # Several URLs (comma-separated): dashboard processes sharing one database; a worker that cannot
        # reach the one it uses moves on to the next (docs/cluster.md, "Several dashboard processes").
        self.server_urls = [url.strip().rstrip("/") for url in server_url.split(",") if url.strip()]
        if not self.server_urls:
            raise ValueError(f"no dashboard URL in {server_url!r}")
        self._url_index = 0
        self.run_id = run_id
        self.token = token
        self._api_token = api_token  # only to register the run; the worker socket uses the run's own token
        self._config = dict(config) if config is not None else None
        self._name = name
        self._memory_bound = memory_bound_points
        self._flush_interval = flush_interval
        # At close, a server that never answered (connection refused) gets one more try: training must
        # not wait on a dashboard that is not running; an upload (patient) retries it for a few seconds.
        # A server that did answer is most likely restarting: it is retried until close()'s timeout.
        self._patient_close = patient_close
        self.spill_path = Path(spill_path) if spill_path else Path.cwd() / spill_file_name(run_id, os.getpid())

        # Filled by the training thread, drained by the sender. deque append/popleft are thread-safe.
        self._points: collections.deque[tuple[int, str, float, float]] = collections.deque()
        self._extras: collections.deque[tuple[str, Any]] = collections.deque()  # ("log"|"samples"|"phase"|"status", payload)
        self._unacked: collections.OrderedDict[int, dict[str, Any]] = collections.OrderedDict()
        self._next_seq: int | None = None
        self._spilled_lines = 0  # spill-file lines not yet delivered (they precede everything in memory)
        self._spill_read_offset = 0
        self._spill_lock = threading.Lock()
        self._last_memory_flush = 0.0  # monotonic time the sender last drained memory into a batch

        # Connection state, the sender thread's own.
        self._server_seen = False  # something answered at the URL: worth the close grace period
        self._close_started: float | None = None  # when close() began waiting on an absent server
        self._close_deadline = math.inf  # monotonic time by which close() wants the sender done
        self._abandon = False  # close() waited long enough: the sender stops wherever it is

        self._stop_requested = threading.Event()
        self._ended = threading.Event()  # the run ended: nothing more can be delivered to it
        self._closing = threading.Event()
        self._idle = threading.Event()  # set when nothing is waiting for delivery
        self.connected = threading.Event()
        self.refused: str | None = None
        self.lost: str | None = None  # the dashboard's message when it marked this run lost
        self.delivered_batches = 0
        self.dropped_batches = 0  # refused for good because the run had ended
        self._heartbeat_interval = HEARTBEAT_INTERVAL
        self._thread = threading.Thread(target=self._run, name="orpo-dash-sender", daemon=True)
        self._thread.start()

    @property
    def server_url(self) -> str:
        """The dashboard URL the sender uses now (or will try next)."""
        return self.server_urls[self._url_index]

    # ----- Reporter interface (called from the training loop) -----
    def metrics(self, step: int, values: Mapping[str, float]) -> None:
        if self._ended.is_set():
            return
        now = time.time()
        self._points.extend((step, name, float(value), now) for name, value in values.items())

    def status(self, status: str, *, total_steps: int | None = None, error: str | None = None) -> None:
        if self._ended.is_set():
            return
        self._extras.append(("status", {"status": status, "total_steps": total_steps, "error": error}))

    def log(self, text: str) -> None:
        self._extras.append(("log", [time.time(), "log", text]))

    def output_line(self, stream: str, text: str) -> None:
        self._extras.append(("log", [time.time(), stream, text]))

    def samples(self, step: int, samples: list[dict[str, Any]]) -> None:
        now = time.time()
        self._extras.append(("samples", [{"step": step, "time": now, **sample} for sample in samples]))

    def phase(self, name: str, *, done: int | None = None, total: int | None = None) -> None:
        if self._ended.is_set():
            return
        self._extras.append(("phase", phase(name, done=done, total=total, when=time.time())))

    def stop_requested(self) -> bool:
        return self._stop_requested.is_set()

    def close(self, timeout: float = 15.0) -> None:
        """Deliver what is pending within `timeout`; anything left stays in the spill file."""
        self._close_deadline = time.monotonic() + timeout
        self._closing.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._abandon = True
            self._thread.join(2.0)
        with self._spill_lock:
            leftover = self._pending_messages()
            if self._ended.is_set():
                self.dropped_batches += len(leftover)  # written after the run ended: never accepted
                self.spill_path.unlink(missing_ok=True)
            elif leftover or self._spilled_lines:
                self._rewrite_spill(leftover)
            elif self.spill_path.exists() and self._spill_read_offset:
                self.spill_path.unlink(missing_ok=True)  # everything it held was delivered
        if self._spilled_lines:
            print(
                f"orpo-dash: {self._spilled_lines} undelivered batch(es) kept in {self.spill_path}; "
                f"deliver them with: orpo-dash upload {self.spill_path}",
                file=sys.stderr,
            )

    # ----- re-delivering a spill file (upload_spill_file) -----
    def requeue(self, content: Mapping[str, Any]) -> None:
        """Queue one spilled batch content for delivery after everything queued before it.

        Its points, logs, samples and status keep their order, so a status still lands after the
        points that preceded it."""
        self._points.extend(
            (step, name, math.nan if value is None else value, when) for step, name, value, when in content.get("points", [])
        )
        for entry in content.get("logs", []):
            self._extras.append(("log", entry))
        if content.get("samples"):
            self._extras.append(("samples", content["samples"]))
        if content.get("phase"):
            self._extras.append(("phase", content["phase"]))
        if content.get("status"):
            self._extras.append(("status", content["status"]))

    @property
    def undelivered_batches(self) -> int:
        """Batches left in the spill file; after close(), what `orpo-dash upload` has still to deliver."""
        return self._spilled_lines

    # ----- sender thread -----
    def _run(self) -> None:
        backoff = itertools.chain(RECONNECT_BACKOFF, itertools.repeat(RECONNECT_BACKOFF[-1]))
        untried = len(self.server_urls) - 1  # other URLs to try at once before backing off
        while not self._abandon:
            try:
                if self.run_id is None:
                    self.run_id, self.token = register_run(self.server_url, self._config or {}, self._name,
                                                           api_token=self._api_token)
                with connect(websocket_url(self.server_url, self.run_id), open_timeout=CONNECT_TIMEOUT, close_timeout=2, max_size=None) as ws:
                    self._handshake(ws)
                    backoff = itertools.chain(RECONNECT_BACKOFF, itertools.repeat(RECONNECT_BACKOFF[-1]))
                    if self._pump(ws):
                        return
            except RunEnded as ended:
                self._settle_ended(ended)
                return
            except ProtocolRefused as refusal:
                self.refused = str(refusal)
                print(f"orpo-dash: the dashboard refused this worker: {refusal}", file=sys.stderr)
                return
            except UNREACHABLE:
                pass  # nobody listens there (yet)
            except TRANSIENT:
                self._server_seen = True  # something answered: worth the close grace period
            finally:
                was_connected = self.connected.is_set()
                self.connected.clear()
            if was_connected:
                untried = len(self.server_urls) - 1  # it worked there: after a drop, that URL first
            elif len(self.server_urls) > 1:
                self._url_index = (self._url_index + 1) % len(self.server_urls)
                if untried > 0:
                    untried -= 1
                    continue  # another dashboard process may answer right away
                untried = len(self.server_urls) - 1
            if self._closing.is_set() and self._stop_reconnecting():
                return  # what is left goes to the spill file
            self._spill_if_over_bound()
            delay = next(backoff)
            if self._closing.is_set():
                time.sleep(min(delay, 0.5))  # closing: retry often within the grace period
            else:
                self._closing.wait(delay)  # close() cuts the wait short for one prompt last try

    def _stop_reconnecting(self) -> bool:
        """Closing, with the server out of reach: whether to leave what is left to the spill file now."""
        if self._server_seen:
            # It answered before, so it is most likely restarting, and a restart on a busy machine can
            # take longer than any fixed grace: keep trying while one more connection attempt still
            # fits in close()'s timeout.
            return time.monotonic() + CONNECT_TIMEOUT >= self._close_deadline
        if not self._patient_close:
            return True  # nothing has ever answered there: training must not wait on it
        if self._close_started is None:
            self._close_started = time.monotonic()
        return time.monotonic() - self._close_started > ABSENT_SERVER_GRACE_SECONDS

    def _handshake(self, ws: ClientConnection) -> None:
        ws.send(json.dumps(hello(self.token)))
        welcome = json.loads(ws.recv(timeout=10))
        if welcome.get("type") == "error":
            _raise_refusal(welcome)
        if welcome.get("type") != "welcome":
            raise ProtocolRefused(f"expected a welcome, got {welcome!r}")
        self._heartbeat_interval = float(welcome.get("heartbeat_seconds", HEARTBEAT_INTERVAL))
        acked = int(welcome.get("acked_seq", 0))
        for seq in [s for s in self._unacked if s <= acked]:
            del self._unacked[seq]
        if self._next_seq is None or self._next_seq <= acked:
            self._next_seq = acked + 1
            # Batches numbered against an older view of the server are renumbered after what it has.
            self._unacked = collections.OrderedDict(
                (self._next_seq + i, {**message, "seq": self._next_seq + i}) for i, message in enumerate(self._unacked.values())
            )
            self._next_seq += len(self._unacked)
        self.connected.set()
        self._server_seen = True
        for message in self._unacked.values():  # resend, in order
            ws.send(_dumps(message))

    def _pump(self, ws: ClientConnection) -> bool:
        """Send and receive until the connection drops (returns False) or everything is delivered at close (True)."""
        last_sent = time.monotonic()
        while not self._abandon:
            message = self._next_batch() if len(self._unacked) < MAX_IN_FLIGHT else None
            if message is not None:
                ws.send(_dumps(message))
                last_sent = time.monotonic()
                self._receive(ws, timeout=0)
                continue
            if self._closing.is_set() and not self._unacked and not self._has_work():
                return True
            # Nothing to send yet: wait for acks or commands until the next flush is due.
            self._receive(ws, timeout=0.01 if self._closing.is_set() else self._flush_interval)
            # Beats from this thread, whatever the training loop is doing (a long eval, a checkpoint).
            if time.monotonic() - last_sent > self._heartbeat_interval:
                ws.send(json.dumps(heartbeat()))
                last_sent = time.monotonic()
        return True

    def _has_work(self) -> bool:
        return bool(self._points or self._extras or self._spilled_lines)

    def _receive(self, ws: ClientConnection, *, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            remaining = max(0.0, deadline - time.monotonic())
            try:
                raw = ws.recv(timeout=remaining)
            except TimeoutError:
                return
            message = json.loads(raw)
            kind = message.get("type")
            if kind == "ack":
                seq = int(message["seq"])
                while self._unacked and next(iter(self._unacked)) <= seq:
                    self._unacked.popitem(last=False)
                    self.delivered_batches += 1
            elif kind == "stop":
                self._stop_requested.set()
            elif kind == "lost":
                # Training stops at a checkpoint; what it still sends is kept.
                if self.lost is None:
                    print(f"orpo-dash: {message.get('message')}", file=sys.stderr)
                self.lost = str(message.get("message"))
                self._stop_requested.set()
            elif kind == "error":
                if message.get("code") == "run_ended":
                    _raise_refusal(message)
                if message.get("code") == "bad_batch":
                    # The server will never accept this batch: drop it rather than resend forever.
                    self._unacked.pop(int(message.get("seq", -1)), None)
                print(f"orpo-dash: dashboard error: {message.get('message')}", file=sys.stderr)

    def _settle_ended(self, ended: RunEnded) -> None:
        """The run has ended: what it committed is delivered, the rest can never be, so it is dropped
        instead of waiting in a spill file for an upload that would be refused too."""
        for seq in list(self._unacked):
            if seq <= ended.acked_seq:
                del self._unacked[seq]
                self.delivered_batches += 1
        with self._spill_lock:
            dropped = len(self._pending_messages()) + self._spilled_lines
            self._spilled_lines = 0
        self.dropped_batches += dropped
        self._ended.set()
        if dropped:
            self.refused = str(ended)
            print(f"orpo-dash: {ended}; {dropped} batch(es) sent after that were dropped", file=sys.stderr)

    def _next_batch(self) -> dict[str, Any] | None:
        """The oldest undelivered content as one numbered batch: spilled lines first, then memory."""
        assert self._next_seq is not None
        with self._spill_lock:
            content = self._read_spilled_line() if self._spilled_lines else None
        if content is None:
            content = self._drain_memory(force=self._closing.is_set())
        if content is None:
            return None
        message = batch(self._next_seq, content)
        self._unacked[self._next_seq] = message
        self._next_seq += 1
        return message

    def _drain_memory(self, *, force: bool) -> dict[str, Any] | None:
        now = time.monotonic()
        due = force or len(self._points) >= MAX_BATCH_POINTS or now - self._last_memory_flush >= self._flush_interval
        if not due or not (self._points or self._extras):
            return None
        self._last_memory_flush = now
        points: list[tuple[int, str, float, float]] = []
        while self._points and len(points) < MAX_BATCH_POINTS:
            points.append(self._points.popleft())
        content: dict[str, Any] = {}
        if points:
            content["points"] = wire_points(points)
        logs: list[Any] = []
        samples: list[Any] = []
        # A status change ends the batch, so it is applied after the points that precede it; while points
        # are still queued (a backlog bigger than one batch) it waits for a later batch: a run marked
        # completed before its last points arrive would show a finished run with steps missing.
        while self._extras:
            kind, payload = self._extras.popleft()
            if kind == "log":
                logs.append(payload)
            elif kind == "samples":
                samples.extend(payload)
            elif kind == "phase":
                content["phase"] = payload  # only the latest counts: eval batches come faster than batches go
            elif self._points:
                self._extras.appendleft((kind, payload))
                break
            else:
                content["status"] = payload
                break
        if logs:
            content["logs"] = logs
        if samples:
            content["samples"] = samples
        return content

    # ----- spilling -----
    def _pending_messages(self) -> list[dict[str, Any]]:
        pending = [batch_content(message) for message in self._unacked.values()]
        self._unacked.clear()
        while True:
            content = self._drain_memory(force=True)
            if content is None:
                return pending
            pending.append(content)

    def _spill_if_over_bound(self) -> None:
        if len(self._points) <= self._memory_bound:
            return
        with self._spill_lock:
            chunks = []
            while len(self._points) > self._memory_bound // 2:
                points = [self._points.popleft() for _ in range(min(MAX_BATCH_POINTS, len(self._points)))]
                chunks.append({"points": wire_points(points)})
            self._spill(chunks)

    def _spill(self, contents: list[dict[str, Any]]) -> None:
        new_file = not self.spill_path.exists()
        self.spill_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.spill_path, "a", encoding="utf-8") as handle:
            if new_file:
                handle.write(json.dumps(self._spill_header()) + "\n")
                self._spill_read_offset = handle.tell()
            handle.writelines(_dumps(content) + "\n" for content in contents)
        self._spilled_lines += len(contents)

    def _rewrite_spill(self, leftover: list[dict[str, Any]]) -> None:
        """Leave a spill file holding exactly what was not delivered, with a header naming the run."""
        remaining: list[str] = []
        if self.spill_path.exists() and self._spilled_lines:
            with open(self.spill_path, encoding="utf-8") as handle:
                handle.seek(self._spill_read_offset)
                remaining = [line for line in handle if line.strip()]
        temporary = self.spill_path.with_name(self.spill_path.name + ".tmp")
        temporary.parent.mkdir(parents=True, exist_ok=True)  # e.g. a run that failed before making its output_dir
        with open(temporary, "w", encoding="utf-8") as handle:
            handle.write(json.dumps(self._spill_header()) + "\n")
            handle.writelines(remaining)
            handle.writelines(_dumps(content) + "\n" for content in leftover)
        os.replace(temporary, self.spill_path)  # atomic: a crash leaves the old file or the new one
        self._spilled_lines = len(remaining) + len(leftover)

    def _spill_header(self) -> dict[str, Any]:
        return spill_header(server=",".join(self.server_urls), run_id=self.run_id, token=self.token, config=self._config, name=self._name)

    def _read_spilled_line(self) -> dict[str, Any] | None:
        with open(self.spill_path, encoding="utf-8") as handle:
            handle.seek(self._spill_read_offset)
            line = handle.readline()
            self._spill_read_offset = handle.tell()
        self._spilled_lines -= 1
        return orjson.loads(line) if line.strip() else None


def _raise_refusal(message: dict[str, Any]) -> None:
    if message.get("code") == "run_ended":
        raise RunEnded(str(message.get("message", "the run has ended")), int(message.get("acked_seq", 0)))
    raise ProtocolRefused(message.get("message", "refused"))


def _dumps(message: dict[str, Any]) -> str:
    # orjson encodes a 5,000-point batch ~10x faster than json; the client pre-converts NaN/Inf to null.
    return orjson.dumps(message).decode()


def upload_spill_file(path: str | os.PathLike[str], *, server_url: str | None = None, timeout: float = 120.0) -> int:
    """Deliver a spill file left by a worker; returns the run id it went to. Registers the run if needed."""
    path = Path(path)
    header, contents = read_spill_file(path)
    server = server_url or header["server"]
    reporter = StreamingReporter(
        server, header.get("run_id"), header.get("token"),
        spill_path=path.with_suffix(".uploading.jsonl"), config=header.get("config") or {}, name=header.get("name"),
        patient_close=True,
    )
    for content in contents:
        reporter.requeue(content)
    reporter.close(timeout=timeout)
    if reporter.refused:
        raise RuntimeError(reporter.refused)
    if reporter.undelivered_batches:
        raise RuntimeError(f"the dashboard at {server} could not take everything; what is left is in {reporter.spill_path}")
    if reporter.run_id is None:
        raise RuntimeError(f"could not reach the dashboard at {server}")
    return reporter.run_id


class OutputTee:
    """A stdout/stderr wrapper that also forwards complete lines to the dashboard's log tail."""

    def __init__(self, stream: TextIO, reporter: StreamingReporter, name: str) -> None:
        self._stream = stream
        self._reporter = reporter
        self._name = name
        self._partial = ""

    def write(self, text: str) -> int:
        self._stream.write(text)
        self._partial += text
        *lines, self._partial = self._partial.split("\n")
        for line in lines:
            if line.strip():
                self._reporter.output_line(self._name, line[-4000:])
        return len(text)

    def flush(self) -> None:
        self._stream.flush()

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self._stream, attribute)
