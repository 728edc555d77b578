"""Who is calling: the one dependency every route, page and websocket goes through (docs/security.md).

With auth off (the loopback default) every caller is the local user, with every right, and nothing is
looked up. With auth on, a caller is a user named by a signed session cookie (the login page) or by a
personal API token (`Authorization: Bearer ...`); anyone else gets 401, or for a page a redirect to
/login. Roles then limit what a known caller may change.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, HTTPException, Request, WebSocket
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.requests import HTTPConnection

from orpo_dash.protocol import CLOSE_UNAUTHORIZED
from server.models import Run, User
from server.services.accounts import Role, password_fingerprint, role_at_least, user_for_token

SESSION_COOKIE = "orpo_dash_session"
SESSION_SECRET_FILE = "session-secret"


@dataclass(frozen=True)
class Caller:
    """The person (or script) behind a request."""

    name: str | None  # None: the local user of a dashboard with auth off
    role: Role
    user_id: int | None = None
    via_token: bool = False

    def can(self, needed: Role) -> bool:
        return role_at_least(self.role, needed)


LOCAL_CALLER = Caller(name=None, role="admin")


class NotAuthenticated(Exception):
    """No valid session cookie or API token on a dashboard with auth on."""


def bearer_token(conn: HTTPConnection) -> str | None:
    scheme, _, token = conn.headers.get("authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def identify(conn: HTTPConnection) -> Caller | None:
    """The caller of this request or websocket, or None if auth is on and they did not prove who they are."""
    if not conn.app.state.settings.auth:
        return LOCAL_CALLER
    token = bearer_token(conn)
    with conn.app.state.session_factory() as session:
        if token is not None:
            user = user_for_token(session=session, token=token)
        else:
            user_id = conn.session.get("user_id")
            user = session.get(User, user_id) if isinstance(user_id, int) else None
            if user is not None and conn.session.get("password") != password_fingerprint(user):
                user = None  # logged in before the password changed: that login has ended
        if user is None:
            return None
        return Caller(name=user.name, role=user.role, user_id=user.id, via_token=token is not None)  # type: ignore[arg-type]


def current_caller(conn: HTTPConnection) -> Caller:
    """The dependency: every router except the login page and the worker socket declares it."""
    caller = identify(conn)
    if caller is None:
        raise NotAuthenticated
    conn.state.caller = caller  # for templates (the nav shows who is logged in)
    return caller


CallerDep = Annotated[Caller, Depends(current_caller)]


def require(needed: Role) -> Any:
    def check_role(caller: CallerDep) -> Caller:
        if not caller.can(needed):
            raise HTTPException(
                status_code=403,
                detail=f"your role ({caller.role}) cannot do this; it needs {needed} or above: ask an admin",
            )
        return caller

    return Depends(check_role)


MemberDep = Annotated[Caller, require("member")]
AdminDep = Annotated[Caller, require("admin")]


def ensure_may_change(caller: Caller, run: Run) -> None:
    """Members stop and delete only the runs they started; admins (and the local user) any run."""
    if caller.role == "admin" or (caller.name is not None and run.created_by == caller.name):
        return
    owner = run.created_by or "someone while auth was off"
    raise HTTPException(status_code=403, detail=f"run {run.id} was started by {owner}; only they or an admin can do this")


async def refuse_unauthenticated(conn: HTTPConnection, _error: Exception) -> Response | None:
    """Exception handler: 401 for the API and websockets, a redirect to the login page for pages."""
    if isinstance(conn, WebSocket):
        await conn.accept()  # accept first so the client can read the close code
        await conn.close(code=CLOSE_UNAUTHORIZED, reason="log in or send an API token")
        return None
    assert isinstance(conn, Request)
    wants_page = conn.method == "GET" and not conn.url.path.startswith("/api/") and "authorization" not in conn.headers
    if wants_page:
        target = conn.url.path + (f"?{conn.url.query}" if conn.url.query else "")
        return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)
    return JSONResponse(
        {"detail": "not authenticated: log in, or send a personal API token as 'Authorization: Bearer TOKEN'"},
        status_code=401, headers={"WWW-Authenticate": "Bearer"},
    )


def session_secret(settings: Any) -> str:
    """The cookie-signing key: from settings, else created once in the data folder, readable by its owner only."""
    if settings.session_secret:
        return str(settings.session_secret)
    path = Path(settings.data_dir) / SESSION_SECRET_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as file:
        file.write(secrets.token_urlsafe(48))
    return path.read_text().strip()
