"""Browser <- server websocket (docs/protocol.md): subscribe, catch up from the database, then live."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from fastapi import APIRouter, Depends, WebSocket

from orpo_dash.protocol import (
    CLOSE_BAD_PROTOCOL,
    CLOSE_NOT_FOUND,
    CLOSE_TRY_AGAIN_LATER,
    MAX_BROWSER_FRAME_CHARS,
    MAX_STEP,
)
from server.auth import current_caller
from server.routes.disconnects import DISCONNECTS
from server.services import metrics as metric_service
from server.services import runs as run_service
from server.ws_frames import BadFrame, receive_json

router = APIRouter(dependencies=[Depends(current_caller)])

CATCH_UP_CHUNK = 5000


@router.websocket("/ws/runs/{run_id}")
async def run_socket(ws: WebSocket, run_id: int) -> None:
    state = ws.app.state
    await ws.accept()
    try:
        after_step = _after_step(await asyncio.wait_for(receive_json(ws, max_chars=MAX_BROWSER_FRAME_CHARS), 30))
    except DISCONNECTS:
        return
    except BadFrame as problem:
        await _close(ws, problem.close_code, problem.error)
        return
    except TimeoutError:
        after_step = None
    if after_step is None:
        await _close(ws, CLOSE_BAD_PROTOCOL, 'first message must be {"type": "subscribe", "after_step": N}')
        return

    # Subscribe before reading history, so a point committed in between is not lost;
    # `sent` then drops anything the live stream repeats.
    subscription = state.hub.subscribe(run_id)
    try:
        run_public = await asyncio.to_thread(_read_run, state, run_id)
        if run_public is None:
            await ws.close(code=CLOSE_NOT_FOUND, reason=f"run {run_id} not found")
            return
        await ws.send_json({"type": "run", "run": run_public})
        sent: dict[str, int] = {}
        for chunk in await asyncio.to_thread(_read_points_after, state, run_id, after_step):
            for step, name, _value, _time in chunk:
                sent[name] = max(sent.get(name, -1), step)
            await ws.send_json({"type": "points", "points": chunk})
        floor = after_step
        # The browser sends nothing after subscribing; reading anyway is how a closed tab is noticed,
        # so its handler and subscription end at once instead of at the run's next message.
        closed = asyncio.create_task(_wait_for_close(ws))
        try:
            while True:
                next_message = asyncio.create_task(subscription.queue.get())
                done, _ = await asyncio.wait({next_message, closed}, return_when=asyncio.FIRST_COMPLETED)
                if closed in done:
                    next_message.cancel()
                    return
                message = next_message.result()
                if message is None:
                    await ws.close(code=CLOSE_TRY_AGAIN_LATER, reason="too far behind; reconnect to catch up")
                    return
                if message["type"] == "points":
                    fresh = [p for p in message["points"] if p[0] > max(sent.get(p[1], -1), floor)]
                    if not fresh:
                        continue
                    for step, name, _value, _time in fresh:
                        sent[name] = max(sent.get(name, -1), step)
                    message = {"type": "points", "points": fresh}
                await ws.send_json(message)
        finally:
            closed.cancel()
    except DISCONNECTS:
        pass
    finally:
        subscription.close()


def _after_step(first: Any) -> int | None:
    """The step a subscribe asks to resume after (-1: from the start), or None if it is not a subscribe.
    An integer from -1 to MAX_STEP only: 1e30 or "abc" would fail in the database query instead."""
    if not isinstance(first, dict) or first.get("type") != "subscribe":
        return None
    after_step = first.get("after_step", -1)
    if type(after_step) is float and after_step.is_integer():
        after_step = int(after_step)  # JavaScript numbers are all floats
    if type(after_step) is not int or not -1 <= after_step <= MAX_STEP:
        return None
    return after_step


async def _close(ws: WebSocket, code: int, reason: str) -> None:
    with contextlib.suppress(*DISCONNECTS, RuntimeError):
        await ws.close(code=code, reason=reason)


async def _wait_for_close(ws: WebSocket) -> None:
    try:
        while True:
            # Anything the browser sends after subscribing is ignored, text or binary.
            if (await ws.receive())["type"] == "websocket.disconnect":
                return
    except (*DISCONNECTS, RuntimeError):
        return


def _read_run(state: Any, run_id: int) -> dict[str, Any] | None:
    with state.session_factory() as session:
        run = run_service.get_run(session=session, run_id=run_id)
        if run is None:
            return None
        return run_service.public_run(session=session, run=run).model_dump(mode="json")


def _read_points_after(state: Any, run_id: int, after_step: int) -> list[list[list[Any]]]:
    with state.session_factory() as session:
        names = metric_service.metric_names(session=session, run_id=run_id)
        points = [list(point) for point in metric_service.points_after_each(
            session=session, run_id=run_id, names=names, default_after=after_step)]
    return [points[i:i + CATCH_UP_CHUNK] for i in range(0, len(points), CATCH_UP_CHUNK)]
