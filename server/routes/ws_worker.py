"""Worker -> server websocket (docs/protocol.md): hello, then sequenced batches, each acked after commit."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from fastapi import APIRouter, WebSocket
from sqlalchemy.exc import OperationalError
from starlette.websockets import WebSocketState

from orpo_dash import protocol
from orpo_dash.protocol import (
    CLOSE_BAD_PROTOCOL,
    CLOSE_NOT_FOUND,
    CLOSE_RUN_ENDED,
    CLOSE_TRY_AGAIN_LATER,
    CLOSE_UNAUTHORIZED,
    MAX_WORKER_FRAME_CHARS,
    PROTOCOL_VERSION,
    ProtocolError,
    heartbeat,
    shown,
)
from server.routes.disconnects import DISCONNECTS
from server.services import runs as run_service
from server.services.ingest import BatchOutOfOrder, RunEnded, skip_rejected_batch
from server.ws_frames import BadFrame, close_for, receive_json

log = logging.getLogger(__name__)
router = APIRouter()

HELLO_TIMEOUT_SECONDS = 15.0
HELLO_MAX_CHARS = 4096  # a hello is a type, a protocol number and a token


async def _refuse(ws: WebSocket, code: int, error: str, message: str) -> None:
    await ws.send_json({"type": "error", "code": error, "message": message})
    await ws.close(code=code, reason=error)


async def _end_of_run(ws: WebSocket, message: dict[str, Any]) -> None:
    with contextlib.suppress(Exception):
        await ws.send_json(message)
        await ws.close(code=CLOSE_RUN_ENDED, reason="run ended")


@router.websocket("/ws/worker/{run_id}")
async def worker_socket(ws: WebSocket, run_id: int) -> None:
    state = ws.app.state
    await ws.accept()
    try:
        hello = await asyncio.wait_for(receive_json(ws, max_chars=HELLO_MAX_CHARS), HELLO_TIMEOUT_SECONDS)
    except DISCONNECTS:
        return
    except (TimeoutError, BadFrame):
        with contextlib.suppress(Exception):
            await _refuse(ws, CLOSE_BAD_PROTOCOL, "bad_hello", "the first message must be a JSON hello")
        return
    if not isinstance(hello, dict) or hello.get("type") != "hello" or not isinstance(hello.get("token", ""), str):
        await _refuse(ws, CLOSE_BAD_PROTOCOL, "bad_hello", "the first message must be {\"type\": \"hello\", ...}")
        return
    if hello.get("protocol") != PROTOCOL_VERSION:
        await _refuse(
            ws, CLOSE_BAD_PROTOCOL, "protocol_version",
            f"this dashboard speaks worker protocol {PROTOCOL_VERSION}, the worker sent {hello.get('protocol')!r}; "
            "install the same orpo-dash version on the worker and the dashboard",
        )
        return

    def lookup() -> tuple[bool, bool, int, bool, str, bool]:
        with state.session_factory() as session:
            run = run_service.get_run(session=session, run_id=run_id)
            if run is None:
                return False, False, 0, False, "", False
            authorised = run_service.token_matches(run, str(hello.get("token", "")))
            return True, authorised, run.last_seq, run.stop_requested, run.status, run.token_revoked_at is not None

    exists, authorised, acked_seq, stop_requested, run_state, revoked = await asyncio.to_thread(lookup)
    if not exists:
        await _refuse(ws, CLOSE_NOT_FOUND, "run_not_found", f"run {run_id} does not exist on this dashboard")
        return
    if not authorised:
        await _refuse(ws, CLOSE_UNAUTHORIZED, "unauthorized", f"the token is not valid for run {run_id}")
        return
    if revoked:
        # Its own token, so it may learn what was committed (a resend after the run ended is settled,
        # not lost), but it writes nothing more.
        await _end_of_run(ws, protocol.run_ended(run_id, run_state, acked_seq))
        return

    state.last_heard.heard(run_id)
    await ws.send_json(protocol.welcome(run_id, acked_seq, state.settings.heartbeat_seconds))
    commands = state.hub.attach_worker(run_id)
    if stop_requested:
        commands.put_nowait({"type": "stop"})
    if run_state == "lost":
        commands.put_nowait(protocol.lost(run_id, state.settings.worker_timeout))
    send_lock = asyncio.Lock()
    pending: set[asyncio.Task[None]] = set()

    async def send(message: dict[str, Any]) -> None:
        async with send_lock:
            if ws.application_state == WebSocketState.CONNECTED:
                await ws.send_json(message)

    async def forward_commands() -> None:
        while True:
            await send(await commands.get())

    async def ack_when_committed(seq: int, message: dict[str, Any]) -> None:
        try:
            await asyncio.wrap_future(state.writer.submit_batch(run_id, message))
        except ProtocolError as error:
            await refuse_batch(seq, str(error))
            return
        except RunEnded as ended:
            async with send_lock:
                await _end_of_run(ws, protocol.run_ended(run_id, ended.final_status, ended.acked_seq))
            return
        except (BatchOutOfOrder, OperationalError) as error:
            # Not committed, and not the batch's fault: drop the connection; the worker reconnects,
            # learns what was committed (welcome.acked_seq) and resends the rest in order.
            log.warning("run %s: batch %s not stored (%s); asking the worker to reconnect", run_id, seq, error)
            with contextlib.suppress(Exception):
                await ws.close(code=CLOSE_TRY_AGAIN_LATER, reason="batch not stored, reconnect and resend")
            return
        except Exception as error:  # noqa: BLE001 - a batch the database cannot hold: say so, do not go silent
            log.exception("run %s: batch %s could not be stored", run_id, seq)
            await refuse_batch(seq, f"the dashboard could not store this batch ({type(error).__name__}: {str(error)[:200]})")
            return
        await send({"type": "ack", "seq": seq})

    async def refuse_batch(seq: int, reason: str) -> None:
        """A batch that can never be stored: the worker drops it; its seq counts as used."""
        with contextlib.suppress(Exception):
            await asyncio.wrap_future(state.writer.submit(
                lambda session: skip_rejected_batch(session=session, run_id=run_id, seq=seq)))
        await send({"type": "error", "code": "bad_batch", "seq": seq, "message": reason})

    forwarder = asyncio.create_task(forward_commands())
    try:
        while True:
            # orjson (in receive_json): a 5,000-point batch decodes several times faster than with json.
            message = await receive_json(ws, max_chars=MAX_WORKER_FRAME_CHARS)
            state.last_heard.heard(run_id)  # any message is a sign of life
            kind = message.get("type") if isinstance(message, dict) else None
            if kind == "batch":
                # Acks are sent from tasks so reading continues while earlier batches commit;
                # the writer commits in arrival order, so acks leave in order too.
                seq = message.get("seq")
                if not isinstance(seq, int) or isinstance(seq, bool):
                    await send({"type": "error", "code": "bad_batch", "seq": None,
                                "message": f"batch seq must be an integer, got {shown(seq)}"})
                    continue
                task = asyncio.create_task(ack_when_committed(seq, message))
                pending.add(task)
                task.add_done_callback(pending.discard)
            elif kind == "heartbeat":
                await send(heartbeat())
            else:
                await send({"type": "error", "code": "unknown_type", "message": f"unknown message type {shown(kind)}"})
    except DISCONNECTS:
        pass
    except BadFrame as problem:
        async with send_lock:
            await close_for(ws, problem)
    finally:
        forwarder.cancel()
        state.hub.detach_worker(run_id, commands)
        # Batches already handed to the writer still commit; only their acks are lost, and the worker resends them.
        for task in list(pending):
            task.cancel()
