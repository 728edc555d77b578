"""The one list of exceptions that mean a websocket peer went away normally.

Both sockets (ws_worker, ws_browser) end quietly on these; anything else is a bug and is logged.
It lives with the server rather than in orpo_dash.protocol because it names Starlette's exception,
and the protocol module is imported by trainers that never load the web stack.
"""

from __future__ import annotations

import asyncio

from starlette.websockets import WebSocketDisconnect

# The peer closed (WebSocketDisconnect), its TCP connection broke (ConnectionError), or the server
# is shutting down and cancelled the handler (CancelledError).
DISCONNECTS = (WebSocketDisconnect, ConnectionError, asyncio.CancelledError)
