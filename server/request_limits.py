"""Every HTTP request is bounded and strictly parsed before a route sees it (docs/security.md, Limits).

- A body larger than `max_request_bytes` gets 413, whether or not it announced its length.
- A JSON body must be strict JSON: no lone UTF-16 surrogates ("\\ud800"), no NaN or Infinity, no
  number too large for a double, nesting at most MAX_JSON_DEPTH deep, and no NUL character in any
  string. Python's json module accepts all of these, and each ended in a 500 further in (a name
  SQLite cannot encode, a text PostgreSQL cannot hold).
- The URL's path and query must not contain NUL either, for the same reason.

Refusals are 413/422 in FastAPI's shape (`detail` is a list of {type, loc, msg}), so clients parse
them like any validation error. Websockets pass through: their frames are checked in their handlers
(server/ws_frames.py).

An import (`POST /api/imports`, a run's metrics file) has its own, larger limit and is not JSON-checked (a
trainer_state.json holds NaN literals): it is passed through unread, so that the route streams it to a file
after the caller's role is checked, counting its bytes (server/routes/api_imports.py).
"""

from __future__ import annotations

import json
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_JSON_DEPTH = 32
IMPORT_PATH = "/api/imports"


class RequestLimits:
    def __init__(self, app: ASGIApp, *, max_body_bytes: int, max_import_bytes: int | None = None) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_import_bytes = max_import_bytes or max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if b"%00" in scope.get("query_string", b"") or "\x00" in scope.get("path", ""):
            await _refuse(send, 422, "url", "the URL contains a NUL character (%00); remove it")
            return
        declared = _content_length(scope)
        if scope.get("path") == IMPORT_PATH and scope.get("method") == "POST":
            if declared is not None and declared > self.max_import_bytes:
                await _refuse(send, 413, "body", import_too_large(self.max_import_bytes))
                return
            await self.app(scope, receive, send)
            return
        if declared is not None and declared > self.max_body_bytes:
            await _refuse(send, 413, "body", self._too_large())
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await _refuse(send, 413, "body", self._too_large())
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if body and _is_json(scope) and (problem := json_problem(body)):
            await _refuse(send, 422, "body", problem, kind="json_invalid")
            return

        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _too_large(self) -> str:
        return (f"the request body is larger than {self.max_body_bytes} bytes, this dashboard's limit "
                "(ORPO_DASH_MAX_REQUEST_BYTES); a run config is a few KiB, so send less")


def import_too_large(limit: int) -> str:
    return (f"the file is larger than {limit} bytes, this dashboard's limit for imports "
            "(ORPO_DASH_MAX_IMPORT_BYTES); gzip it (.gz files are read too) or raise the limit")


def json_problem(body: bytes) -> str | None:
    """Why `body` is not strict JSON this server can store, or None."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        return f"the request body is not valid JSON ({error}); send one JSON object"
    # Walked with a stack, not recursion: the depth is what is being checked.
    stack: list[tuple[Any, int]] = [(document, 0)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            return f"the request body nests deeper than {MAX_JSON_DEPTH} levels; a run config is at most 3 deep"
        if isinstance(value, str):
            if "\x00" in value:
                return "the request body contains a NUL character (\\u0000) in a string; remove it"
        elif isinstance(value, dict):
            stack.extend((key, depth + 1) for key in value)
            stack.extend((item, depth + 1) for item in value.values())
        elif isinstance(value, list):
            stack.extend((item, depth + 1) for item in value)
    return None


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _is_json(scope: Scope) -> bool:
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            return b"json" in value.lower()
    return True  # FastAPI reads a body without a content type as JSON too


async def _refuse(send: Send, status: int, where: str, message: str, *, kind: str = "value_error") -> None:
    body = json.dumps({"detail": [{"type": kind, "loc": [where], "msg": message}]}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
