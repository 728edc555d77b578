"""Another site in the same browser cannot stop a run or read its stream, even on loopback and even while
the user is logged in (docs/security.md). The attacker is a real page on a second local port: to the
browser that is another origin but the same site, so SameSite cookies alone would not stop it."""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import connect

from orpo_dash.protocol import PROTOCOL_VERSION
from tests.accounts import PASSWORD
from tests.conftest import LiveServer, serve_with_auth
from tests.pages.test_accessibility import UNLABELLED_CONTROLS

pytestmark = pytest.mark.browser

ATTACKER_PAGE = """<!doctype html>
<title>cute cats</title>
<form id="attack" method="post" action="{dashboard}/api/runs/{run_id}/stop"></form>
<script>
  window.socketEvents = [];
  const ws = new WebSocket("{socket}/ws/runs/{run_id}");
  ws.onopen = () => {{ socketEvents.push("open"); ws.send(JSON.stringify({{type: "subscribe", after_step: -1}})); }};
  ws.onmessage = (event) => socketEvents.push("message");
  ws.onclose = (event) => socketEvents.push("close");
</script>
"""


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def attacker(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """(origin, folder) of a static site on another local port."""
    folder = tmp_path / "attacker"
    folder.mkdir()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(folder)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", folder
    finally:
        httpd.shutdown()
        httpd.server_close()


def _attack(page: Any, server: LiveServer, attacker: tuple[str, Path], run_id: int) -> list[str]:
    """Open the attacker's page, let its socket try, submit its form; returns what the socket saw."""
    origin, folder = attacker
    (folder / "cats.html").write_text(ATTACKER_PAGE.format(
        dashboard=server.url, socket=server.url.replace("http://", "ws://"), run_id=run_id))
    page.goto(f"{origin}/cats.html")
    page.wait_for_function("() => window.socketEvents.includes('close')")
    events = page.evaluate("window.socketEvents")
    with page.expect_navigation():
        page.evaluate("document.getElementById('attack').submit()")
    assert "cross-site request refused" in page.content()
    return events  # type: ignore[no-any-return]


def _register(server: LiveServer, dataset: Path, headers: dict[str, str] | None = None) -> tuple[int, str]:
    response = server.api("POST", "/api/runs", params={"launch": "false"}, json={"dataset": str(dataset)}, headers=headers or {})
    assert response.status_code == 201, response.text
    return int(response.json()["id"]), response.json()["worker_token"]


def _stop_requested(server: LiveServer, run_id: int, worker_token: str) -> bool:
    """Ask as the run's worker: a stop requested while it was away is the first command after welcome."""
    with connect(server.url.replace("http://", "ws://") + f"/ws/worker/{run_id}", open_timeout=10) as ws:
        ws.send(json.dumps({"type": "hello", "protocol": PROTOCOL_VERSION, "token": worker_token}))
        assert json.loads(ws.recv(timeout=10))["type"] == "welcome"
        try:
            return bool(json.loads(ws.recv(timeout=1.5))["type"] == "stop")
        except TimeoutError:
            return False


def test_another_local_origin_cannot_stop_a_loopback_run_or_read_its_stream(
    page: Any, live_server: LiveServer, attacker: tuple[str, Path], tiny_dataset_file: Path,
) -> None:
    run_id, worker_token = _register(live_server, tiny_dataset_file)
    events = _attack(page, live_server, attacker, run_id)
    assert "open" not in events and "message" not in events, events
    assert not _stop_requested(live_server, run_id, worker_token)
    # The dashboard's own page still stops it: its requests carry its own Origin.
    page.goto(f"{live_server.url}/runs/{run_id}")
    page.click("#stop-btn")
    page.locator("#confirm-dialog").wait_for(state="visible")
    with page.expect_response(f"**/api/runs/{run_id}/stop") as stopped:
        page.click("#confirm-ok")
    assert stopped.value.status == 200
    assert _stop_requested(live_server, run_id, worker_token)


def test_a_logged_in_user_is_not_used_by_another_origin(page: Any, tmp_path: Path, attacker: tuple[str, Path], tiny_dataset_file: Path) -> None:
    page.set_default_timeout(60_000)  # many steps, each a page load on a shared, busy machine
    for server in serve_with_auth(tmp_path, users=("alice",)):
        page.goto(server.url + "/")
        assert page.url.startswith(server.url + "/login")
        assert page.evaluate(UNLABELLED_CONTROLS) == []
        page.fill("#login-name", "alice")
        page.fill("#login-password", PASSWORD)
        page.click("#login-submit")
        page.wait_for_url(server.url + "/")
        assert page.inner_text("#nav-account") == "alice (admin)"
        cookies = {c["name"]: c["value"] for c in page.context.cookies()}
        run_id, worker_token = _register(server, tiny_dataset_file, headers={
            "Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items()), "Origin": server.url})
        events = _attack(page, server, attacker, run_id)
        assert "open" not in events and "message" not in events, events
        assert not _stop_requested(server, run_id, worker_token)
        # Logged in, the dashboard's own pages work under its Content-Security-Policy, and say who started the run.
        page.goto(server.url + "/")
        assert page.locator(f'tr[data-run-id="{run_id}"] .run-owner').inner_text() == "by alice"
        page.goto(f"{server.url}/runs/{run_id}")
        page.wait_for_selector("#run-owner")
        assert "alice" in page.inner_text("#run-owner")
        # The account page makes a token with its form and shows it once.
        page.click("#nav-account")
        assert page.evaluate(UNLABELLED_CONTROLS) == []
        page.fill("#token-label", "notebook")
        page.click("#create-token")
        assert page.inner_text("#new-token").startswith("odt_")
        assert "notebook" in page.inner_text("#tokens-table")
        page.click("#logout-btn")
        page.wait_for_url(server.url + "/login")
        # A login that ends while a page is open: its next request leads back to the login page.
        page.goto(f"{server.url}/runs/{run_id}")
        page.fill("#login-name", "alice")
        page.fill("#login-password", PASSWORD)
        page.click("#login-submit")
        page.wait_for_url(f"{server.url}/runs/{run_id}")
        page.context.clear_cookies()
        # Any API call the page makes now (a refresh, a button) answers 401 (not the stop button itself: this
        # run has no worker, and may already be marked lost, which hides that button).
        page.evaluate("() => { Dash.api('GET', '/api/runs').catch(() => null); }")
        page.wait_for_url(f"{server.url}/login?next=%2Fruns%2F{run_id}")
