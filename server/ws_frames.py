"""Reading one websocket frame as JSON, for both sockets: a frame that is not what the protocol allows
becomes a BadFrame naming the close code and the reason, never a traceback or a dropped socket.

Starlette's `receive_text` raises KeyError on a binary frame; `json.loads` accepts NaN, numbers far
beyond any column and lone surrogates that no database can store. Here a frame must be text, at most
`max_chars` long, and strict JSON (orjson: no NaN/Infinity, no lone surrogates, integers that do not
fit 64 bits arrive as floats and fail the type checks behind).
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import WebSocket, WebSocketDisconnect

from orpo_dash.protocol import CLOSE_BAD_PROTOCOL, CLOSE_TOO_LARGE


class BadFrame(Exception):
    """A frame the protocol does not allow; `error` is its short code, `message` says what to send."""

    def __init__(self, close_code: int, error: str, message: str) -> None:
        super().__init__(message)
        self.close_code = close_code
        self.error = error
        self.message = message


async def receive_json(ws: WebSocket, *, max_chars: int) -> Any:
    """The next frame, parsed. Raises WebSocketDisconnect when the peer closed, BadFrame otherwise."""
    message = await ws.receive()
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", 1000), message.get("reason"))
    text = message.get("text")
    if text is None:
        raise BadFrame(CLOSE_BAD_PROTOCOL, "binary_frame", "frames must be JSON text; this one was binary")
    if len(text) > max_chars:
        raise BadFrame(CLOSE_TOO_LARGE, "frame_too_large",
                       f"a frame on this socket may hold at most {max_chars} characters, this one held {len(text)}")
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as error:
        raise BadFrame(CLOSE_BAD_PROTOCOL, "bad_json", f"frames must be strict JSON text ({error})") from None


async def close_for(ws: WebSocket, problem: BadFrame) -> None:
    """Say what was wrong in an error frame, then close with the problem's code. The peer may be gone."""
    try:
        await ws.send_json({"type": "error", "code": problem.error, "message": problem.message})
        await ws.close(code=problem.close_code, reason=problem.error)
    except (WebSocketDisconnect, ConnectionError, RuntimeError):
        pass
