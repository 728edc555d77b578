"""Issue 14, accounts: a user changes their own password on the account page (an admin with
`orpo-dash user passwd NAME`), which ends their other logins; failed logins are limited per user name
and address (429 with Retry-After)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing

import httpx
import pytest

from tests.accounts import PASSWORD, REPO_ROOT, login
from tests.conftest import LiveServer, serve_with_auth

MAX_FAILURES = 3  # per name and address within the window (5 by default; 60 s window)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    yield from serve_with_auth(tmp_path_factory.mktemp("accounts"), {"ORPO_DASH_LOGIN_MAX_FAILURES": str(MAX_FAILURES)},
                               users=("bob", "carol", "dave"))


def _log_in(server: LiveServer, name: str, password: str) -> httpx.Response:
    return httpx.post(server.url + "/login", data={"name": name, "password": password, "next": "/"},
                      headers={"Origin": server.url}, timeout=30)


def _passwd(server: LiveServer, name: str, password: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orpo_dash.cli", "user", "passwd", name, "--password-stdin",
         "--database-url", server.database_url, "--data-dir", str(server.data_dir)],
        input=password + "\n", capture_output=True, text=True, cwd=REPO_ROOT, timeout=60, check=False,
    )


def test_a_user_changes_their_password_and_their_other_logins_end(server: LiveServer) -> None:
    new = "a much better passphrase"
    with closing(login(server.url, "bob")) as here, closing(login(server.url, "bob")) as elsewhere:
        def change(current: str, password: str, again: str) -> httpx.Response:
            return here.post("/settings/password", data={
                "current_password": current, "new_password": password, "new_password_again": again})

        assert "not your password" in change("guess", new, new).text
        assert "differ" in change(PASSWORD, new, new + "!").text
        short = change(PASSWORD, "short", "short")
        assert short.status_code == 422 and "at least 8 characters" in short.text
        assert _log_in(server, "bob", PASSWORD).status_code == 303  # nothing changed so far

        changed = change(PASSWORD, new, new)
        assert changed.status_code == 200 and "Password changed" in changed.text
        assert here.get("/api/runs").status_code == 200  # this login goes on
        assert elsewhere.get("/api/runs").status_code == 401  # the others end
        assert _log_in(server, "bob", PASSWORD).status_code == 401
        assert _log_in(server, "bob", new).status_code == 303

        # An admin on the dashboard's machine sets it back; that ends this login too.
        assert _passwd(server, "bob", "short").returncode == 2
        reset = _passwd(server, "bob", PASSWORD)
        assert reset.returncode == 0 and "password of bob changed" in reset.stdout
        assert here.get("/api/runs").status_code == 401
        assert _log_in(server, "bob", PASSWORD).status_code == 303
    unknown = _passwd(server, "nobody", PASSWORD)
    assert unknown.returncode == 2 and "no user 'nobody'" in unknown.stderr


def test_failed_logins_are_limited_per_name_and_address(server: LiveServer) -> None:
    for _ in range(MAX_FAILURES):
        assert _log_in(server, "carol", "wrong password").status_code == 401
    locked = _log_in(server, "carol", PASSWORD)  # even the right password, until the window passes
    assert locked.status_code == 429 and "Too many failed logins" in locked.text
    assert 1 <= int(locked.headers["Retry-After"]) <= 60
    assert _log_in(server, "someone-else", "wrong password").status_code == 401  # other names are not locked
    # A success clears the count: as many failures again are needed to lock a name.
    for _ in range(MAX_FAILURES - 1):
        assert _log_in(server, "dave", "wrong password").status_code == 401
    assert _log_in(server, "dave", PASSWORD).status_code == 303
    for _ in range(MAX_FAILURES - 1):
        assert _log_in(server, "dave", "wrong password").status_code == 401
    assert _log_in(server, "dave", PASSWORD).status_code == 303


def test_a_locked_name_may_try_again_once_its_oldest_failure_leaves_the_window() -> None:
    from server.login_throttle import LoginThrottle

    throttle = LoginThrottle(max_failures=5, window=60)
    for second in range(5):
        assert throttle.retry_after("carol", "10.0.0.1", now=100 + second) is None
        throttle.failed("carol", "10.0.0.1", now=100 + second)
    assert throttle.retry_after("carol", "10.0.0.1", now=105) == 55
    assert throttle.retry_after("carol", "10.0.0.2", now=105) is None  # another address
    assert throttle.retry_after("carol", "10.0.0.1", now=159.5) == 1
    assert throttle.retry_after("carol", "10.0.0.1", now=160) is None  # the first failure has left the window
