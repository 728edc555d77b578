"""The worker <-> server websocket protocol, the browser socket's path and close codes, and the
spill file a worker leaves when the server cannot take its batches (docs/protocol.md explains them).

This module is the one definition of the wire format: the trainer builds its messages here, the
server parses them here, and the page gets its close codes from here (templates/base.html).

All frames are JSON text. Points travel as compact lists `[step, name, value, time]` because a
busy run sends hundreds of thousands of them and per-point objects would dominate the cost.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any, Literal, get_args

PROTOCOL_VERSION = 1

WORKER_PATH = "/ws/worker/{run_id}"
# A launched worker finds its run's token in this environment variable, never on its command line
# (where `ps` shows it to every user of the machine).
WORKER_TOKEN_ENV = "ORPO_DASH_WORKER_TOKEN"
# A worker started on another machine (a Ray job) gets its run config as JSON in this variable: the
# dashboard's run folder, where a local worker finds config.json, is not on that machine.
RUN_CONFIG_ENV = "ORPO_DASH_RUN_CONFIG"
# A user's personal API token, for `orpo-dash train --server` against a dashboard with auth on.
API_TOKEN_ENV = "ORPO_DASH_TOKEN"
BROWSER_PATH = "/ws/runs/{run_id}"

# Close codes: 1013 is RFC 6455's "try again later"; 4000-4999 are application codes.
CLOSE_TRY_AGAIN_LATER = 1013  # not stored / fell behind, through no fault of the peer: reconnect
CLOSE_BAD_PROTOCOL = 4400
CLOSE_UNAUTHORIZED = 4401
CLOSE_NOT_FOUND = 4404
# After these a browser stops reconnecting, since asking again cannot help. The page reads them from
# a data- attribute rendered from this tuple (templates/base.html), so the JS holds no copy.
# 4401: not logged in (auth on, session expired); the page's next request leads to the login page.
BROWSER_FINAL_CLOSE_CODES = (CLOSE_BAD_PROTOCOL, CLOSE_UNAUTHORIZED, CLOSE_NOT_FOUND)
# The run has ended and its worker token writes nothing more; sent after a `run_ended` error.
CLOSE_RUN_ENDED = 4410
CLOSE_TOO_LARGE = 1009  # RFC 6455: a message too big to process

# Frame sizes, in characters (docs/security.md, Limits). A worker batch holds at most 5,000 points
# (about 400 KB) plus the logs and samples since the last one; a browser only ever sends its subscribe.
MAX_WORKER_FRAME_CHARS = 16 * 1024 * 1024
MAX_BROWSER_FRAME_CHARS = 4096
# A sample's prompt and completion each; the trainer cuts longer ones itself (trainer/recipe.py).
MAX_SAMPLE_CHARS = 64_000

RunStatus = Literal["queued", "running", "completed", "failed", "stopped", "lost", "imported"]
RUN_STATUSES: tuple[str, ...] = get_args(RunStatus)
# `lost`: the dashboard heard nothing from the run's worker for worker_timeout (docs/protocol.md).
# `imported`: a run made elsewhere, brought in from its files (`orpo-dash import`); it never had a worker.
TERMINAL_STATUSES = ("completed", "failed", "stopped", "lost", "imported")
# The statuses a worker may report: its progress and its own end. Never `queued` (the launcher would
# start a second worker for the run) and never `lost` (only the dashboard decides that).
WORKER_STATUSES = ("running", "completed", "failed", "stopped")

# What a worker is doing, reported in a batch's "phase" (docs/protocol.md): the page shows it instead of
# an ETA that reached 0 s while the final evaluation and checkpoint are still running.
Phase = Literal["starting", "training", "evaluating", "generating samples", "saving checkpoint"]
PHASES: tuple[str, ...] = get_args(Phase)

Point = tuple[int, str, float, float]  # step, metric name, value, unix time
# Steps are stored as INTEGER, 32-bit on PostgreSQL; names in a VARCHAR(200); neither holds a NUL.
MAX_STEP = 2**31 - 1
MAX_NAME = 200


class ProtocolError(ValueError):
    """A frame that does not follow the protocol; the message says what was expected."""


def hello(token: str | None) -> dict[str, Any]:
    """The worker's first message on every (re)connect."""
    return {"type": "hello", "protocol": PROTOCOL_VERSION, "token": token}


def heartbeat() -> dict[str, Any]:
    """Sent by a worker after a quiet spell (heartbeat_seconds, from the welcome), from its sender thread
    whatever training is doing; the server answers with the same. Any message counts as a sign of life."""
    return {"type": "heartbeat"}


def welcome(run_id: int, acked_seq: int, heartbeat_seconds: float) -> dict[str, Any]:
    """The server accepts a worker's hello: batches up to acked_seq are committed; beat this often."""
    return {"type": "welcome", "protocol": PROTOCOL_VERSION, "run_id": run_id, "acked_seq": acked_seq,
            "heartbeat_seconds": heartbeat_seconds}


def run_ended(run_id: int, status: str, acked_seq: int) -> dict[str, Any]:
    """The run has ended, so its token writes nothing more; batches up to acked_seq were committed.
    Sent instead of a welcome, or in place of an ack, then the socket closes with CLOSE_RUN_ENDED."""
    return {
        "type": "error", "code": "run_ended", "status": status, "acked_seq": acked_seq,
        "message": f"run {run_id} has ended ({status}); this worker's token writes nothing more to it. "
                   "To continue training, start a new run with resume_from set to a checkpoint",
    }


def lost(run_id: int, worker_timeout: float) -> dict[str, Any]:
    """The dashboard gave up on this worker's run (status `lost`); the worker stops at a checkpoint and
    delivers what it still holds, which is kept. Sent after the welcome, or at once if it is connected."""
    return {
        "type": "lost",
        "message": f"the dashboard heard nothing from this worker for more than {worker_timeout:g} s and marked "
                   f"run {run_id} lost; stop, save a checkpoint and deliver what is left (it is kept)",
    }


def batch(seq: int, content: Mapping[str, Any]) -> dict[str, Any]:
    """One sequenced unit of work; the server commits it atomically, then acks `seq`.

    `content` holds any of "points" (wire_points), "logs" ([time, stream, text] lists), "samples",
    "phase" (phase()) and "status": exactly what a spill-file line holds, so spilled batches are resent unchanged.
    """
    return {"type": "batch", "seq": seq, **content}


def phase(name: str, *, done: int | None = None, total: int | None = None, when: float) -> dict[str, Any]:
    """A batch's "phase": what the worker is doing since `when`, with its own progress (e.g. eval batch
    done/total) where it has one. Servers that predate phases ignore the key."""
    return {"name": name, "done": done, "total": total, "time": when}


def parse_phase(raw: Any) -> dict[str, Any]:
    """A batch's phase, checked; ProtocolError names what is wrong."""
    if not isinstance(raw, dict) or raw.get("name") not in PHASES:
        raise ProtocolError(f"a batch's phase must be an object whose name is one of {', '.join(PHASES)}, got {shown(raw)}")
    done, total, when = raw.get("done"), raw.get("total"), raw.get("time")
    for key, value in (("done", done), ("total", total)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_STEP):
            raise ProtocolError(f"a phase's {key} must be an integer from 0 to {MAX_STEP} or null, got {shown(value)}")
    if not isinstance(when, (int, float)) or isinstance(when, bool) or not math.isfinite(when):
        raise ProtocolError(f"a phase's time must be a unix timestamp, got {shown(when)}")
    return {"name": raw["name"], "done": done, "total": total, "time": float(when)}


def batch_content(message: Mapping[str, Any]) -> dict[str, Any]:
    """A batch without its envelope (type and seq): what a spill-file line holds."""
    return {key: value for key, value in message.items() if key not in ("type", "seq")}


def wire_points(points: Iterable[Point]) -> list[list[Any]]:
    """Points as a batch carries them: JSON has no NaN or Infinity, so a non-finite value travels as null."""
    isfinite = math.isfinite
    return [[step, name, value if isfinite(value) else None, when] for step, name, value, when in points]


# ----- spill files -----
# A worker that cannot deliver keeps its batches in a JSON-lines file: one header line naming the
# run (and how to register it if it never was), then one batch content per line, oldest first.
SPILL_HEADER_TYPE = "spill"
SPILL_FILE_PREFIX = "orpo-dash-spill-"


def spill_file_name(run_id: int | None, pid: int) -> str:
    """The spill file of one worker process; run_id None: a run it has still to register."""
    return f"{SPILL_FILE_PREFIX}run{'new' if run_id is None else run_id}-{pid}.jsonl"


def spill_file_pattern(run_id: int) -> re.Pattern[str]:
    """Matches exactly the names spill_file_name gives run_id's files (not an upload's ".uploading" copy)."""
    return re.compile(rf"{re.escape(SPILL_FILE_PREFIX)}run{run_id}-\d+\.jsonl")


def spill_header(
    *, server: str, run_id: int | None, token: str | None, config: Mapping[str, Any] | None, name: str | None
) -> dict[str, Any]:
    """A spill file's first line: where its batches go, or what `orpo-dash upload` registers."""
    return {"type": SPILL_HEADER_TYPE, "protocol": PROTOCOL_VERSION, "server": server,
            "run_id": run_id, "token": token, "config": config, "name": name}


def read_spill_file(path: str | os.PathLike[str]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(header, batch contents in order) of a spill file; ProtocolError if it has no spill header."""
    with open(path, encoding="utf-8") as handle:
        header = json.loads(handle.readline())
        contents = [json.loads(line) for line in handle if line.strip()]
    if not isinstance(header, dict) or header.get("type") != SPILL_HEADER_TYPE:
        raise ProtocolError(f"{os.fspath(path)} is not an orpo-dash spill file (its first line has no spill header)")
    return header, [content for content in contents if isinstance(content, dict)]


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


def clip_sample_text(text: str) -> str:
    """A sample's prompt or completion cut to MAX_SAMPLE_CHARS, saying so at the end: the worker clips
    (a long dataset prompt is still worth a sample), the server refuses anything longer."""
    if len(text) <= MAX_SAMPLE_CHARS:
        return text
    marker = f" [... cut: {len(text)} characters in all]"
    return text[:MAX_SAMPLE_CHARS - len(marker)] + marker


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
    whole = _well_formed_columns(raw_points)
    if whole is not None:
        return whole
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


_FLOAT_OR_NULL = frozenset({float, type(None)})


def _well_formed_columns(raw_points: list[Any]) -> list[Point] | None:
    """The batch as points when every point is the usual [int, str, float | null, float], else None.

    Checked column by column with builtins that loop in C (map, set, min, max, zip): per point this
    costs a fraction of even the exact-type checks of the loop in parse_points, and a busy run sends
    every point through here. An infinite value (only possible from a caller that is not JSON) goes
    the long way too.
    """
    if not raw_points:
        return []
    if set(map(type, raw_points)) != {list} or set(map(len, raw_points)) != {4}:
        return None
    steps, names, values, times = zip(*raw_points, strict=True)
    if set(map(type, steps)) != {int} or min(steps) < 0 or max(steps) > MAX_STEP:
        return None
    if set(map(type, times)) != {float} or not set(map(type, values)) <= _FLOAT_OR_NULL:
        return None
    if set(map(type, names)) != {str} or any(not 0 < len(name) <= MAX_NAME or "\x00" in name for name in set(names)):
        return None
    if None in values:
        values = tuple(math.nan if value is None else value for value in values)
    if any(map(math.isinf, values)):
        return None
    return list(zip(steps, names, values, times, strict=True))
