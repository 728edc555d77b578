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
    throttle = request.app.state.login_throttle
    address = request.client.host if request.client else "?"
    if (wait := throttle.retry_after(name, address)) is not None:
        context = {"next": _local_path(next), "name": name,
                   "error": f"Too many failed logins for this name from your address; try again in {wait} s."}
        return templates.TemplateResponse(request, "login.html", context, status_code=429,
                                          headers={"Retry-After": str(wait)})
    user = accounts.authenticate(session=session, name=name, password=password)
    if user is None:
        throttle.failed(name, address)
        # Logged for the operator (and tools like fail2ban): repeated failures from one address are a guess attack.
        log.warning("failed login for %r from %s", name[:100], address)
        context = {"next": _local_path(next), "error": "Wrong user name or password.", "name": name}
        return templates.TemplateResponse(request, "login.html", context, status_code=401)
    throttle.succeeded(name, address)
    _start_session(request, user.id, accounts.password_fingerprint(user))
    return RedirectResponse(_local_path(next), status_code=303)


def _start_session(request: Request, user_id: int, fingerprint: str) -> None:
    request.session.clear()
    request.session["user_id"] = user_id
    request.session["password"] = fingerprint  # a password change ends the other logins (server/auth.py)


@public_router.post("/logout")
def log_out(request: Request) -> RedirectResponse:
    if request.app.state.settings.auth:
        request.session.clear()
    return RedirectResponse("/login", status_code=303)


def _account_page(
    request: Request, session: Session, caller: Caller, new_token: str | None = None,
    password_message: str | None = None, password_error: str | None = None, status_code: int = 200,
) -> HTMLResponse:
    context = {
        "password_message": password_message,
        "password_error": password_error,
        "auth": request.app.state.settings.auth,
        "tokens": accounts.list_tokens(session=session, user_id=caller.user_id) if caller.user_id else [],
        "users": accounts.list_users(session=session) if caller.can("admin") and caller.user_id else [],
        "new_token": new_token,
    }
    return templates.TemplateResponse(request, "account.html", context, status_code=status_code)


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


@router.post("/settings/password", response_class=HTMLResponse)
def change_password(
    request: Request, session: SessionDep, caller: CallerDep,
    current_password: Annotated[str, Form()], new_password: Annotated[str, Form()],
    new_password_again: Annotated[str, Form()],
) -> HTMLResponse:
    """Change one's own password: the current one is asked again, so a borrowed session cannot do it.
    Every other login of the user ends; this one goes on."""
    user_id = _logged_in_user(caller)
    assert caller.name is not None
    problem = None
    if accounts.authenticate(session=session, name=caller.name, password=current_password) is None:
        problem = "current password: that is not your password"
    elif new_password != new_password_again:
        problem = "new password: the two entries differ"

    def write(tx: Session) -> str:
        user = tx.get(User, user_id)
        assert user is not None
        accounts.set_password(user=user, password=new_password)
        return accounts.password_fingerprint(user)

    if problem is None:
        try:
            fingerprint = request.app.state.writer.write(write)
        except accounts.AccountError as error:
            problem = str(error)
    if problem is not None:
        return _account_page(request, session, caller, password_error=problem, status_code=422)
    _start_session(request, user_id, fingerprint)
    log.info("user %s changed their password", caller.name)
    return _account_page(request, session, caller, password_message="Password changed; your other logins have ended.")
