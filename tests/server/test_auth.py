"""Auth on: every route, page and websocket needs a caller; roles limit what they change (docs/security.md).

One real dashboard (auth on, no local workers) serves the whole module; each test makes its own runs.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute, APIWebSocketRoute
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from orpo_dash.protocol import CLOSE_UNAUTHORIZED, PROTOCOL_VERSION
from server.app import create_app
from server.settings import Settings
from tests.accounts import PASSWORD, create_token, login
from tests.conftest import LiveServer, serve_with_auth

# Open without a caller, on purpose: the login form itself, and the worker socket, which takes the
# per-run token its launcher or `orpo-dash train --server` was given (checked below all the same).
PUBLIC = {("GET", "/login"), ("POST", "/login"), ("POST", "/logout"), ("WS", "/ws/worker/{run_id}")}
# State-changing routes a viewer may use: their own API tokens (which carry their own role).
# Every role manages its own account: its tokens and its password (tests/server/test_account_security.py).
VIEWER_MAY_CHANGE = {
    ("POST", "/settings/tokens"), ("POST", "/settings/tokens/{token_id}/revoke"), ("POST", "/settings/password"),
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    yield from serve_with_auth(tmp_path_factory.mktemp("auth"))


@pytest.fixture(scope="module")
def admin(server: LiveServer) -> Iterator[httpx.Client]:
    with closing(login(server.url, "alice")) as client:
        yield client


@pytest.fixture(scope="module")
def routes(server: LiveServer) -> list[tuple[str, str]]:
    return _walk(create_app(Settings(auth=True, launch_workers=False, data_dir=server.data_dir)))


def _walk(app: Any) -> list[tuple[str, str]]:
    """(method or "WS", path) for every route of the app, found by walking it, not listed by hand."""
    try:
        from fastapi.routing import (
            iter_route_contexts,  # recent FastAPI keeps included routers nested
        )

        found = [(context.original_route, context.path) for context in iter_route_contexts(app.routes)]
    except ImportError:
        found = [(route, getattr(route, "path", None)) for route in app.routes]
    walked: list[tuple[str, str]] = []
    for route, path in found:
        if isinstance(route, APIRoute):
            walked += [(method, str(path)) for method in sorted(route.methods)]
        elif isinstance(route, APIWebSocketRoute):
            walked.append(("WS", str(path)))
    as_in_schema = {(method, re.sub(r"\{(\w+):\w+\}", r"{\1}", path)) for method, path in walked}  # {path:path}
    for path, operations in app.openapi()["paths"].items():
        for method in operations:
            assert (method.upper(), path) in as_in_schema, f"{method.upper()} {path} is in the OpenAPI schema but was not walked"
    return walked


def _register(client: httpx.Client, dataset: Path, **config: Any) -> dict[str, Any]:
    response = client.post("/api/runs", params={"launch": "false"}, json={"dataset": str(dataset), **config})
    assert response.status_code == 201, response.text
    return response.json()


def _fill(path: str, run_id: int) -> str:
    return path.replace("{run_id}", str(run_id)).replace("{path:path}", "config.json").replace("{token_id}", "1")


def _ws_url(server: LiveServer, path: str) -> str:
    return "ws://127.0.0.1:" + str(server.port) + path


def _close_code(url: str, first: dict[str, Any], **kwargs: Any) -> int | None:
    """Open a websocket, send its first message, return the close code the server chose."""
    try:
        with connect(url, open_timeout=10, **kwargs) as ws:
            ws.send(json.dumps(first))
            while True:
                ws.recv(timeout=10)
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else None


def test_the_walk_finds_every_kind_of_route(routes: list[tuple[str, str]]) -> None:
    # A walk that silently found nothing (say, after a FastAPI change) would make the tests below vacuous.
    assert ("POST", "/api/runs/{run_id}/stop") in routes
    assert ("GET", "/runs/{run_id}") in routes
    assert ("WS", "/ws/runs/{run_id}") in routes and ("WS", "/ws/worker/{run_id}") in routes
    assert len(routes) >= 25


def test_every_route_refuses_a_caller_without_credentials(
    server: LiveServer, admin: httpx.Client, routes: list[tuple[str, str]], tiny_dataset_file: Path,
) -> None:
    run = _register(admin, tiny_dataset_file)
    anonymous = httpx.Client(base_url=server.url, headers={"Origin": server.url}, timeout=30)
    checked = 0
    for method, path in routes:
        if (method, path) in PUBLIC:
            continue
        url = _fill(path, run["id"])
        if method == "WS":
            code = _close_code(_ws_url(server, url), {"type": "subscribe", "after_step": -1})
            assert code == CLOSE_UNAUTHORIZED, f"websocket {path} without credentials closed with {code}"
        else:
            response = anonymous.request(method, url, json={} if method in ("POST", "PATCH") else None)
            if path.startswith("/api/"):
                assert response.status_code == 401, f"{method} {path} without credentials answered {response.status_code}"
            elif method == "GET":
                assert response.status_code == 303, f"{method} {path} without credentials answered {response.status_code}"
                assert response.headers["location"].startswith("/login?next="), response.headers["location"]
            else:
                assert response.status_code == 401, f"{method} {path} without credentials answered {response.status_code}"
        checked += 1
    assert checked >= 25
    # The worker socket takes only its run's own token.
    for token in (None, "not-the-token", create_token(admin)):
        hello = {"type": "hello", "protocol": PROTOCOL_VERSION, **({"token": token} if token else {})}
        assert _close_code(_ws_url(server, f"/ws/worker/{run['id']}"), hello) == CLOSE_UNAUTHORIZED


def test_a_viewer_can_read_but_changes_nothing(
    server: LiveServer, admin: httpx.Client, routes: list[tuple[str, str]], tiny_dataset_file: Path,
) -> None:
    run = _register(admin, tiny_dataset_file)
    with closing(login(server.url, "carol")) as viewer:
        assert viewer.get("/api/runs").status_code == 200
        assert viewer.get(f"/api/runs/{run['id']}").status_code == 200
        assert viewer.get(f"/runs/{run['id']}").status_code == 200
        changing = [(m, p) for m, p in routes if m not in ("GET", "HEAD", "WS") and (m, p) not in PUBLIC]
        assert len(changing) >= 5
        for method, path in changing:
            if (method, path) in VIEWER_MAY_CHANGE:
                continue
            response = viewer.request(method, _fill(path, run["id"]), json={"dataset": str(tiny_dataset_file)})
            assert response.status_code == 403, f"viewer: {method} {path} answered {response.status_code}"
            assert "viewer" in response.json()["detail"], response.text
        # A viewer's token carries the viewer's role.
        token = create_token(viewer)
    as_script = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert as_script.post(f"/api/runs/{run['id']}/stop").status_code == 403
    assert admin.get(f"/api/runs/{run['id']}").json()["status"] == "running"


def test_members_start_runs_and_stop_only_their_own(server: LiveServer, admin: httpx.Client, tiny_dataset_file: Path) -> None:
    with closing(login(server.url, "bob")) as bob, closing(login(server.url, "dave")) as dave:
        mine = _register(bob, tiny_dataset_file, name="bob's run")
        assert mine["created_by"] == "bob"
        assert admin.get(f"/api/runs/{mine['id']}").json()["created_by"] == "bob"
        theirs = _register(dave, tiny_dataset_file)
        refused = bob.post(f"/api/runs/{theirs['id']}/stop")
        assert refused.status_code == 403 and "dave" in refused.json()["detail"]
        assert bob.delete(f"/api/runs/{theirs['id']}").status_code == 403
        assert bob.patch(f"/api/runs/{theirs['id']}", json={"tags": ["seen-by-bob"]}).status_code == 200
        assert bob.post(f"/api/runs/{mine['id']}/stop").status_code == 200
        # Run pages say who started the run.
        assert "Started by bob" in bob.get(f"/runs/{mine['id']}").text
    assert admin.post(f"/api/runs/{theirs['id']}/stop").status_code == 200


def test_login_page_rejects_a_wrong_password_and_logout_ends_the_session(server: LiveServer) -> None:
    client = httpx.Client(base_url=server.url, headers={"Origin": server.url}, timeout=30)
    page = client.get("/", follow_redirects=True)
    assert page.url.path == "/login" and 'name="password"' in page.text
    wrong = client.post("/login", data={"name": "alice", "password": PASSWORD + "x"})
    assert wrong.status_code == 401 and "Wrong user name or password" in wrong.text
    assert client.post("/login", data={"name": "nobody", "password": PASSWORD}).status_code == 401
    assert client.get("/api/runs").status_code == 401
    assert server.log_path is not None and "failed login for 'nobody'" in server.log_path.read_text()
    logged_in = client.post("/login", data={"name": "alice", "password": PASSWORD, "next": "/compare"})
    assert logged_in.status_code == 303 and logged_in.headers["location"] == "/compare"
    cookie = logged_in.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "max-age=" in cookie
    assert client.get("/api/runs").status_code == 200
    # Only paths on this site are followed after login.
    assert client.post("/login", data={"name": "alice", "password": PASSWORD, "next": "//evil.example/"}).headers["location"] == "/"
    assert client.post("/logout").status_code == 303
    assert client.get("/api/runs").status_code == 401


def test_api_tokens_are_shown_once_work_as_bearer_and_can_be_revoked(server: LiveServer, admin: httpx.Client, tiny_dataset_file: Path) -> None:
    token = create_token(admin, "laptop")
    page = admin.get("/settings").text
    assert "laptop" in page and token not in page  # listed, never shown again
    script = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert script.get("/api/runs").status_code == 200
    # A script sends neither Origin nor Referer; its token is its credential.
    created = script.post("/api/runs", params={"launch": "false"}, json={"dataset": str(tiny_dataset_file)})
    assert created.status_code == 201 and created.json()["created_by"] == "alice"
    token_id = re.search(r'data-token-id="(\d+)"[^<]*<td>laptop', page, re.DOTALL)
    assert token_id, page
    assert admin.post(f"/settings/tokens/{token_id.group(1)}/revoke").status_code == 303
    assert script.get("/api/runs").status_code == 401
    assert httpx.get(server.url + "/api/runs", headers={"Authorization": "Bearer odt_madeup"}).status_code == 401


def test_train_registers_a_run_with_the_users_api_token(server: LiveServer, admin: httpx.Client, tiny_dataset_file: Path) -> None:
    from trainer.streaming import ProtocolRefused, register_run

    config = {"dataset": str(tiny_dataset_file)}
    with pytest.raises(ProtocolRefused, match="--token"):
        register_run(server.url, config, "from-script")
    run_id, worker_token = register_run(server.url, config, "from-script", api_token=create_token(admin))
    assert worker_token and admin.get(f"/api/runs/{run_id}").json()["created_by"] == "alice"


def test_a_browser_socket_needs_a_session_and_the_dashboards_origin(server: LiveServer, admin: httpx.Client, tiny_dataset_file: Path) -> None:
    run = _register(admin, tiny_dataset_file)
    cookie = "; ".join(f"{name}={value}" for name, value in admin.cookies.items())
    url = _ws_url(server, f"/ws/runs/{run['id']}")
    with connect(url, additional_headers={"Cookie": cookie}, origin=server.url, open_timeout=10) as ws:  # type: ignore[arg-type]
        ws.send('{"type": "subscribe", "after_step": -1}')
        assert json.loads(ws.recv(timeout=10))["type"] == "run"
    with pytest.raises(InvalidStatus) as refused:
        connect(url, additional_headers={"Cookie": cookie}, origin="http://127.0.0.1:1", open_timeout=10)  # type: ignore[arg-type]
    assert refused.value.response.status_code == 403


def test_cross_site_posts_are_refused_even_with_a_session(server: LiveServer, admin: httpx.Client, tiny_dataset_file: Path) -> None:
    run = _register(admin, tiny_dataset_file)
    cookies = dict(admin.cookies.items())
    stop = f"{server.url}/api/runs/{run['id']}/stop"
    assert httpx.post(stop, cookies=cookies, headers={"Origin": "http://127.0.0.1:1"}).status_code == 403
    assert httpx.post(stop, cookies=cookies, headers={"Referer": "http://localhost:9/x"}).status_code == 403
    assert httpx.post(stop, cookies=cookies, headers={"Origin": "null"}).status_code == 403
    assert httpx.post(stop, cookies=cookies).status_code == 403  # a browser always names its origin on POST
    assert admin.get(f"/api/runs/{run['id']}").json()["status"] == "running"


def test_unknown_host_headers_are_refused(server: LiveServer) -> None:
    for host in ("evil.example", f"evil.example:{server.port}", "127.0.0.1.evil.example"):
        response = httpx.get(server.url + "/login", headers={"Host": host})
        assert response.status_code == 400, host
    assert httpx.get(server.url + "/login", headers={"Host": f"localhost:{server.port}"}).status_code == 200
    # A websocket handshake too (the websockets client always sends the real Host, so build it by hand).
    handshake = {"Host": "evil.example", "Connection": "Upgrade", "Upgrade": "websocket",
                 "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
    assert httpx.get(server.url + "/ws/runs/1", headers=handshake).status_code == 403


def test_pages_carry_the_security_headers(server: LiveServer) -> None:
    headers = httpx.get(server.url + "/login").headers
    assert headers["x-frame-options"] == "DENY"
    assert headers["x-content-type-options"] == "nosniff"
    assert "script-src 'self'" in headers["content-security-policy"]
    assert "frame-ancestors 'none'" in headers["content-security-policy"]


def test_a_session_expires(tmp_path: Path) -> None:
    for server in serve_with_auth(tmp_path, {"ORPO_DASH_SESSION_MAX_AGE_SECONDS": "2"}, users=("alice",)):
        with closing(login(server.url, "alice")) as client:
            assert client.get("/api/runs").status_code == 200
            time.sleep(3)
            assert client.get("/api/runs").status_code == 401
            assert client.get("/", follow_redirects=False).headers["location"] == "/login?next=%2F"


def test_the_cookie_key_is_made_once_readable_by_its_owner_only(server: LiveServer) -> None:
    secret = server.data_dir / "session-secret"
    assert secret.stat().st_mode & 0o777 == 0o600
    assert len(secret.read_text().strip()) >= 40
