"""Random frames on both websockets: every connection either stays usable or is closed with a close
code, and the server log holds no traceback. Seeded, so a failure replays."""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from orpo_dash.protocol import MAX_BROWSER_FRAME_CHARS, hello
from tests.conftest import LiveServer, _serve

pytestmark = pytest.mark.slow

CONNECTIONS = 120  # per socket and phase; about 20 s in all here


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    yield from _serve(tmp_path_factory.mktemp("ws-fuzz"), None, {"ORPO_DASH_LAUNCH_WORKERS": "0"})


def _huge_number(rng: random.Random) -> str:
    return rng.choice(["1e30", "1e999", "-1e999", str(10**rng.randint(19, 400)), "-0", "1.5e-400", "NaN", "Infinity"])


def _json_value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(8 if depth < 4 else 5)
    if kind == 0:
        return rng.choice([None, True, False])
    if kind == 1:
        return rng.choice([0, -1, 1, 2**31, 2**63, -(2**63), 2**64 - 1, rng.randint(-10**6, 10**6)])
    if kind == 2:
        return rng.choice([0.5, -1e308, 1e308, 5e-324])
    if kind == 3:
        return "".join(chr(rng.randrange(0x110000)) for _ in range(rng.randrange(20))).encode(
            "utf-8", "surrogatepass").decode("utf-8", "replace")
    if kind == 4:
        return rng.choice(["batch", "hello", "subscribe", "heartbeat", "\u0000", "loss", ""])
    if kind == 5:
        return [_json_value(rng, depth + 1) for _ in range(rng.randrange(5))]
    keys = ["type", "seq", "points", "logs", "samples", "status", "after_step", "token", "protocol", "step",
            "prompt", "completion", "total_steps", "error"]
    return {rng.choice(keys): _json_value(rng, depth + 1) for _ in range(rng.randrange(6))}


def random_frame(rng: random.Random) -> str | bytes:
    choice = rng.randrange(10)
    if choice == 0:
        return rng.randbytes(rng.randrange(1, 300))  # binary
    if choice == 1:
        return rng.randbytes(rng.randrange(1, 300)).decode("latin-1")  # text, not JSON
    if choice == 2:
        return "x" * rng.choice([MAX_BROWSER_FRAME_CHARS + 1, 100_000, 2_000_000])  # oversized
    if choice == 3:
        text = json.dumps(_json_value(rng))
        return text[: rng.randrange(max(1, len(text)))]  # truncated JSON
    if choice == 4:
        step, value, when = (_huge_number(rng) for _ in range(3))
        return f'{{"type": "batch", "seq": 1, "points": [[{step}, "loss", {value}, {when}]]}}'
    if choice == 5:
        return f'{{"type": "subscribe", "after_step": {_huge_number(rng)}}}'
    if choice == 6:
        tail = rng.choice(["", "\\udc00x", "\\u0000"])
        return f'{{"type": "hello", "protocol": 1, "token": "\\ud800{tail}"}}'
    if choice == 7:
        return "[" * rng.choice([50, 5000]) + "]" * rng.choice([0, 50])
    if choice == 8:
        message = {"type": "batch", "seq": _json_value(rng), "points": _json_value(rng), "logs": _json_value(rng),
                   "samples": _json_value(rng), "status": _json_value(rng)}
        return json.dumps(message)
    return json.dumps(_json_value(rng))


def _ends_cleanly(ws: ClientConnection, alive: Callable[[ClientConnection], bool]) -> str:
    """'closed' if the server closed with a close frame, 'open' if it still answers; fails on a bare drop."""
    try:
        if alive(ws):
            ws.close()
            assert ws.protocol.close_rcvd is not None, "the server did not answer a close"
            return "open"
        raise AssertionError("the server neither answered nor closed")
    except ConnectionClosed as closed:
        assert closed.rcvd is not None, f"dropped without a close frame ({closed})"
        return f"closed {closed.rcvd.code}"


def _worker_alive(ws: ClientConnection) -> bool:
    ws.send(json.dumps({"type": "heartbeat"}))
    while True:  # errors and acks for the fuzzed frame may come first
        if json.loads(ws.recv(timeout=15)).get("type") == "heartbeat":
            return True


def _browser_alive(ws: ClientConnection) -> bool:
    # After a subscribe only the run's current state comes; a refused socket closes at once.
    try:
        while True:
            ws.recv(timeout=0.3)
    except TimeoutError:
        return True


def _url(server: LiveServer, path: str) -> str:
    return server.url.replace("http://", "ws://") + path


def test_random_frames_never_drop_a_socket_or_log_a_traceback(server: LiveServer) -> None:
    rng = random.Random(14)
    created = server.api("POST", "/api/runs", params={"launch": "false"}, json={"dataset": "org/prefs"}).json()
    run_id, token = created["id"], created["worker_token"]
    outcomes: dict[str, int] = {}

    def tally(phase: str, outcome: str) -> None:
        key = f"{phase}: {outcome}"
        outcomes[key] = outcomes.get(key, 0) + 1

    for _ in range(CONNECTIONS):
        # Worker socket, first frame (in place of a hello).
        with connect(_url(server, f"/ws/worker/{run_id}"), max_size=None) as ws:
            try:
                ws.send(random_frame(rng))
            except ConnectionClosed:
                pass
            tally("worker hello", _ends_cleanly(ws, _worker_alive))
        # Worker socket, after a good hello.
        with connect(_url(server, f"/ws/worker/{run_id}"), max_size=None) as ws:
            ws.send(json.dumps(hello(token)))
            assert json.loads(ws.recv(timeout=10))["type"] == "welcome"
            for _ in range(rng.randrange(1, 4)):
                try:
                    ws.send(random_frame(rng))
                except ConnectionClosed:
                    break
            tally("worker batch", _ends_cleanly(ws, _worker_alive))
        # Browser socket, first frame and after a subscribe.
        with connect(_url(server, f"/ws/runs/{rng.choice([run_id, 2**63, 10**30])}"), max_size=None) as ws:
            subscribed = rng.random() < 0.3
            try:
                ws.send(json.dumps({"type": "subscribe", "after_step": -1}) if subscribed else random_frame(rng))
                if subscribed:
                    ws.send(random_frame(rng))
            except ConnectionClosed:
                pass
            tally("browser", _ends_cleanly(ws, _browser_alive))

    assert server.log_path is not None
    log = server.log_path.read_text()
    assert "Traceback" not in log and "Exception in ASGI" not in log, log[-4000:]
    # Both ways of ending were exercised, on every socket.
    for phase in ("worker hello", "worker batch", "browser"):
        assert any(key.startswith(f"{phase}: closed") for key in outcomes), outcomes
    assert any(key.startswith("worker batch: open") for key in outcomes), outcomes
    print(outcomes)
