"""Both websockets answer a frame they cannot use with an error and a close code, never a traceback
or a dropped connection: binary frames, non-JSON, oversized frames, numbers beyond any column, wrong
types, a 10 MB sample (docs/security.md, Limits; docs/protocol.md)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from orpo_dash.protocol import (
    CLOSE_BAD_PROTOCOL,
    CLOSE_NOT_FOUND,
    CLOSE_TOO_LARGE,
    MAX_BROWSER_FRAME_CHARS,
    hello,
)
from tests.conftest import LiveServer, _serve, assert_no_server_tracebacks


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    yield from _serve(tmp_path_factory.mktemp("ws-limits"), None, {"ORPO_DASH_LAUNCH_WORKERS": "0"})


@pytest.fixture(scope="module")
def worker_run(server: LiveServer) -> tuple[int, str]:
    created = server.api("POST", "/api/runs", params={"launch": "false"}, json={"dataset": "org/prefs"}).json()
    return int(created["id"]), str(created["worker_token"])


@pytest.fixture(scope="module", autouse=True)
def no_tracebacks(server: LiveServer) -> Iterator[None]:
    yield
    assert_no_server_tracebacks(server)


def _ws_url(server: LiveServer, path: str) -> str:
    return server.url.replace("http://", "ws://") + path


def close_code(ws: ClientConnection, timeout: float = 10) -> tuple[int, list[dict[str, Any]]]:
    """Read until the server closes; its close code (never a bare drop) and the frames before it."""
    frames = []
    try:
        while True:
            frames.append(json.loads(ws.recv(timeout=timeout)))
    except ConnectionClosed as closed:
        assert closed.rcvd is not None, "the server dropped the connection without a close frame"
        return closed.rcvd.code, frames


@contextmanager
def welcomed(server: LiveServer, run: tuple[int, str]) -> Iterator[ClientConnection]:
    with connect(_ws_url(server, f"/ws/worker/{run[0]}"), max_size=None) as ws:
        ws.send(json.dumps(hello(run[1])))
        assert json.loads(ws.recv(timeout=10))["type"] == "welcome"
        yield ws


@pytest.mark.parametrize("first", [
    b"\x00\x01binary", "not json", "[1, 2", '{"type": "hello", "protocol": 1, "token": "\\ud800"}',
    '{"type": "hello", "protocol": 1, "token": ["a"]}', "x" * 10_000, "1e999",
])
def test_worker_hello_that_is_not_one_gets_4400(server: LiveServer, worker_run: tuple[int, str], first: Any) -> None:
    with connect(_ws_url(server, f"/ws/worker/{worker_run[0]}")) as ws:
        ws.send(first)
        code, frames = close_code(ws)
    assert code == CLOSE_BAD_PROTOCOL and frames and frames[-1]["type"] == "error", frames


@pytest.mark.parametrize(("frame", "code", "error"), [
    (b"\x89PNG binary", CLOSE_BAD_PROTOCOL, "binary_frame"),
    ("{not json", CLOSE_BAD_PROTOCOL, "bad_json"),
    ('{"type": "batch", "seq": 1, "points": [[1, "loss", NaN, 0.0]]}', CLOSE_BAD_PROTOCOL, "bad_json"),
    ('{"type": "batch", "seq": 1, "points": [[1, "loss", 1e999, 0.0]]}', CLOSE_BAD_PROTOCOL, "bad_json"),
])
def test_worker_frames_that_are_not_json_text_close_with_a_reason(
    server: LiveServer, worker_run: tuple[int, str], frame: Any, code: int, error: str,
) -> None:
    with welcomed(server, worker_run) as ws:
        ws.send(frame)
        got, frames = close_code(ws)
    assert got == code and frames[-1] == {"type": "error", "code": error, "message": frames[-1]["message"]}


def test_an_oversized_worker_frame_closes_with_1009(server: LiveServer, worker_run: tuple[int, str]) -> None:
    from orpo_dash.protocol import MAX_WORKER_FRAME_CHARS

    with welcomed(server, worker_run) as ws:
        ws.send('{"type": "heartbeat", "pad": "' + "x" * MAX_WORKER_FRAME_CHARS + '"}')
        code, frames = close_code(ws)
    assert code == CLOSE_TOO_LARGE and frames[-1]["code"] == "frame_too_large"


@pytest.mark.parametrize(("batch", "reason"), [
    ({"samples": [{"step": 1, "prompt": "p", "completion": "x" * 10_000_000}]}, "at most 64000 characters"),
    ({"samples": 5}, "samples must be a list"),
    ({"logs": {"a": 1}}, "logs must be a list"),
    ({"points": [[10**30, "loss", 1.0, 0.0]]}, "point step"),
    ({"points": [[1, "loss\u0000", 1.0, 0.0]]}, "NUL"),
    ({"status": {"status": "completed", "total_steps": 2**40}}, "total_steps"),
])
def test_bad_batches_are_refused_and_the_stream_goes_on(
    server: LiveServer, worker_run: tuple[int, str], batch: dict[str, Any], reason: str,
) -> None:
    seq = _next_seq(server, worker_run)  # a refused batch uses up its seq
    with welcomed(server, worker_run) as ws:
        ws.send(json.dumps({"type": "batch", "seq": seq, **batch}))
        refusal = json.loads(ws.recv(timeout=30))
        assert refusal["type"] == "error" and refusal["code"] == "bad_batch" and reason in refusal["message"], refusal
        assert len(refusal["message"]) < 1000
        ws.send(json.dumps({"type": "heartbeat"}))
        assert json.loads(ws.recv(timeout=10)) == {"type": "heartbeat"}


def _next_seq(server: LiveServer, run: tuple[int, str]) -> int:
    with connect(_ws_url(server, f"/ws/worker/{run[0]}")) as ws:
        ws.send(json.dumps(hello(run[1])))
        return int(json.loads(ws.recv(timeout=10))["acked_seq"]) + 1


@pytest.mark.parametrize(("first", "code"), [
    (b"\x00binary", CLOSE_BAD_PROTOCOL),
    ("not json", CLOSE_BAD_PROTOCOL),
    ('{"type": "subscribe", "after_step": 1e30}', CLOSE_BAD_PROTOCOL),
    ('{"type": "subscribe", "after_step": 1e999}', CLOSE_BAD_PROTOCOL),
    ('{"type": "subscribe", "after_step": "abc"}', CLOSE_BAD_PROTOCOL),
    ('{"type": "subscribe", "after_step": 100000000000000000000000}', CLOSE_BAD_PROTOCOL),
    ('["subscribe"]', CLOSE_BAD_PROTOCOL),
    ("x" * (MAX_BROWSER_FRAME_CHARS + 1), CLOSE_TOO_LARGE),
])
def test_browser_first_frames_that_are_not_a_subscribe_close_with_a_code(
    server: LiveServer, worker_run: tuple[int, str], first: Any, code: int,
) -> None:
    with connect(_ws_url(server, f"/ws/runs/{worker_run[0]}")) as ws:
        ws.send(first)
        got, _ = close_code(ws)
    assert got == code


@pytest.mark.parametrize("run", [2**31, 2**63, 10**30])
def test_browser_socket_for_ids_beyond_the_column_is_not_found(server: LiveServer, run: int) -> None:
    with connect(_ws_url(server, f"/ws/runs/{run}")) as ws:
        ws.send(json.dumps({"type": "subscribe", "after_step": -1}))
        got, _ = close_code(ws)
    assert got == CLOSE_NOT_FOUND


def test_browser_frames_after_subscribing_are_ignored(server: LiveServer, worker_run: tuple[int, str]) -> None:
    with connect(_ws_url(server, f"/ws/runs/{worker_run[0]}")) as ws:
        ws.send(json.dumps({"type": "subscribe", "after_step": -1}))
        assert json.loads(ws.recv(timeout=10))["type"] == "run"
        ws.send(b"\x00binary after subscribing")
        ws.send("not json either")
        ws.close()
        assert ws.protocol.close_rcvd is not None  # the server answered the close: it was still there


def test_a_sample_the_trainer_clipped_is_accepted(server: LiveServer, worker_run: tuple[int, str]) -> None:
    from orpo_dash.protocol import MAX_SAMPLE_CHARS, clip_sample_text

    long = "y" * 10_000_000
    clipped = clip_sample_text(long)
    assert len(clipped) == MAX_SAMPLE_CHARS and clipped.endswith("[... cut: 10000000 characters in all]")
    assert clip_sample_text("short") == "short"
    seq = _next_seq(server, worker_run)
    with welcomed(server, worker_run) as ws:
        ws.send(json.dumps({"type": "batch", "seq": seq, "samples": [{"step": 1, "prompt": clipped, "completion": clipped}]}))
        assert json.loads(ws.recv(timeout=30)) == {"type": "ack", "seq": seq}
    stored = server.api("GET", f"/api/runs/{worker_run[0]}/samples").json()
    assert stored[-1]["completion"] == clipped
