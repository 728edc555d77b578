"""Login, logout and the account page (personal API tokens; the user list for admins).

Login and logout are the only pages open without a caller; everything else here goes through
`current_caller` like every other route (server/auth.py).
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from server.auth import Caller, CallerDep, current_caller
from server.db import SessionDep
from server.models import User
from server.services import accounts
from server.templating import templates

log = logging.getLogger(__name__)
public_router = APIRouter(include_in_schema=False)
router = APIRouter(include_in_schema=False, dependencies=[Depends(current_caller)])


def _local_path(target: str) -> str:
    """Where to go after logging in: a path on this site only (never //other.example)."""
    return target if target.startswith("/") and not target.startswith(("//", "/\\")) else "/"


@public_router.get("/login", response_class=HTMLResponse, name="login")
def login_page(request: Request, next: str = "/") -> Response:
    if not request.app.state.settings.auth:
        return RedirectResponse("/", status_code=303)
    return templates.TemplateResponse(request, "login.html", {"next": _local_path(next), "error": None})


@public_router.post("/login", response_class=HTMLResponse)
def log_in(
    request: Request, session: SessionDep,
    name: Annotated[str, Form()], password: Annotated[str, Form()], next: Annotated[str, Form()] = "/",
) -> Response:
    if not request.app.state.settings.auth:
        return RedirectResponse("/", status_code=303)
    user = accounts.authenticate(session=session, name=name, password=password)
    if user is None:
        # Logged for the operator (and tools like fail2ban): repeated failures from one address are a guess attack.
        log.warning("failed login for %r from %s", name[:100], request.client.host if request.client else "?")
        context = {"next": _local_path(next), "error": "Wrong user name or password.", "name": name}
        return templates.TemplateResponse(request, "login.html", context, status_code=401)
    request.session.clear()
    request.session["user_id"] = user.id
    return RedirectResponse(_local_path(next), status_code=303)


@public_router.post("/logout")
def log_out(request: Request) -> RedirectResponse:
    if request.app.state.settings.auth:
        request.session.clear()
    return RedirectResponse("/login", status_code=303)


def _account_page(request: Request, session: Session, caller: Caller, new_token: str | None = None) -> HTMLResponse:
    context = {
        "auth": request.app.state.settings.auth,
        "tokens": accounts.list_tokens(session=session, user_id=caller.user_id) if caller.user_id else [],
        "users": accounts.list_users(session=session) if caller.can("admin") and caller.user_id else [],
        "new_token": new_token,
    }
    return templates.TemplateResponse(request, "account.html", context)


@router.get("/settings", response_class=HTMLResponse, name="account")
def account_page(request: Request, session: SessionDep, caller: CallerDep) -> HTMLResponse:
    return _account_page(request, session, caller)


def _logged_in_user(caller: CallerDep) -> int:
    if caller.user_id is None:
        raise HTTPException(status_code=400, detail="auth is off: API tokens are not needed (start with --auth to use them)")
    return caller.user_id


@router.post("/settings/tokens", response_class=HTMLResponse)
def create_token(request: Request, session: SessionDep, caller: CallerDep, label: Annotated[str, Form()] = "") -> HTMLResponse:
    """Creates a token and shows it once; only its hash is kept."""
    user_id = _logged_in_user(caller)

    def write(tx: Session) -> str:
        user = tx.get(User, user_id)
        assert user is not None
        return accounts.create_token(session=tx, user=user, label=label)[1]

    token = request.app.state.writer.write(write)
    return _account_page(request, session, caller, new_token=token)


@router.post("/settings/tokens/{token_id}/revoke")
def revoke_token(request: Request, caller: CallerDep, token_id: int) -> RedirectResponse:
    user_id = _logged_in_user(caller)
    revoked = request.app.state.writer.write(
        lambda tx: accounts.revoke_token(session=tx, user_id=user_id, token_id=token_id))
    if not revoked:
        raise HTTPException(status_code=404, detail=f"you have no live token {token_id}")
    return RedirectResponse("/settings", status_code=303)
