"""The worker <-> server and browser <-> server websocket protocols (docs/protocol.md explains them).

All frames are JSON text. Points travel as compact lists `[step, name, value, time]` because a
busy run sends hundreds of thousands of them and per-point objects would dominate the cost.
"""

from __future__ import annotations

import math
from typing import Any, Literal, get_args

PROTOCOL_VERSION = 1

WORKER_PATH = "/ws/worker/{run_id}"
# A launched worker finds its run's token in this environment variable, never on its command line
# (where `ps` shows it to every user of the machine).
WORKER_TOKEN_ENV = "ORPO_DASH_WORKER_TOKEN"
BROWSER_PATH = "/ws/runs/{run_id}"

# Close codes (4000-4999 are application codes in RFC 6455).
CLOSE_BAD_PROTOCOL = 4400
CLOSE_UNAUTHORIZED = 4401
CLOSE_NOT_FOUND = 4404

RunStatus = Literal["queued", "running", "completed", "failed", "stopped"]
RUN_STATUSES: tuple[str, ...] = get_args(RunStatus)
TERMINAL_STATUSES = ("completed", "failed", "stopped")

Point = tuple[int, str, float, float]  # step, metric name, value, unix time
# Steps are stored as INTEGER, 32-bit on PostgreSQL; names in a VARCHAR(200); neither holds a NUL.
MAX_STEP = 2**31 - 1
MAX_NAME = 200


def hello(token: str) -> dict[str, Any]:
    """The worker's first message on every (re)connect."""
    return {"type": "hello", "protocol": PROTOCOL_VERSION, "token": token}


def batch(
    seq: int,
    *,
    points: list[Point] | None = None,
    logs: list[tuple[float, str, str]] | None = None,
    samples: list[dict[str, Any]] | None = None,
    status: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One sequenced unit of work; the server commits it atomically, then acks `seq`."""
    message: dict[str, Any] = {"type": "batch", "seq": seq}
    if points:
        message["points"] = [list(p) for p in points]
    if logs:
        message["logs"] = [list(entry) for entry in logs]
    if samples:
        message["samples"] = samples
    if status:
        message["status"] = status
    return message


class ProtocolError(ValueError):
    """A frame that does not follow the protocol; the message says what was expected."""


def parse_point(raw: Any) -> Point:
    if not isinstance(raw, (list, tuple)) or len(raw) != 4:
        raise ProtocolError(f"a point must be [step, name, value, time], got {shown(raw)}")
    step, name, value, when = raw
    if not isinstance(step, int) or isinstance(step, bool) or not 0 <= step <= MAX_STEP:
        raise ProtocolError(f"point step must be an integer from 0 to {MAX_STEP}, got {shown(step)}")
    if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME or "\x00" in name:
        raise ProtocolError(
            f"point name must be a non-empty string of at most {MAX_NAME} characters without NUL, got {shown(name)}"
        )
    if value is None:
        value = float("nan")  # JSON has no NaN literal in strict mode; senders may send null for it
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise ProtocolError(f"point value must be a number, got {shown(value)}")
    if not isinstance(when, (int, float)) or isinstance(when, bool):
        raise ProtocolError(f"point time must be a unix timestamp, got {shown(when)}")
    return step, name, float(value), float(when)


def shown(value: Any) -> str:
    """A bad value as an error message quotes it: short, so a 1 MB name does not come back 1 MB."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def parse_points(raw_points: list[Any]) -> list[Point]:
    """parse_point over a batch's points, with a fast path for the well-formed common case.

    Ingestion runs this for every point a worker sends; exact type checks (`type(x) is int` also
    refuses bools) accept the usual [int, str, float | null, float] without calling out, and anything
    else goes through parse_point, which converts it or says what is wrong.
    """
    points: list[Point] = []
    append = points.append
    nan = math.nan
    for raw in raw_points:
        if type(raw) is list and len(raw) == 4:
            step, name, value, when = raw
            if (type(step) is int and 0 <= step <= MAX_STEP and type(name) is str and 0 < len(name) <= MAX_NAME
                    and "\x00" not in name and type(when) is float and (type(value) is float or value is None)):
                append((step, name, nan if value is None else value, when))
                continue
        append(parse_point(raw))
    return points
