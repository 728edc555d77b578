"""Shared fixtures: a real dashboard server on a free port (SQLite or PostgreSQL), tiny local models
and datasets. Factories for the tiny model/tokenizer live in tests/trainer/conftest.py."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO_ROOT / "test-artifacts"
POSTGRES_ADMIN_URL = os.environ.get("ORPO_DASH_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class LiveServer:
    """A real `orpo-dash serve` process."""

    url: str
    port: int
    database_url: str
    data_dir: Path
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    extra_env: dict[str, str] = field(default_factory=dict)

    def start(self) -> None:
        self.log_path = self.data_dir / "server.log"
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "orpo_dash.cli", "serve", "--port", str(self.port),
             "--database-url", self.database_url, "--data-dir", str(self.data_dir)],
            stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "ORPO_DASH_MAX_CONCURRENT_RUNS": "3", **self.extra_env},
        )
        # Generous: on a shared 2-core machine under load, imports and migrations alone took 26 s.
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log_path.read_text()}")
            try:
                # 401: up, with auth on (tests/server/test_auth.py).
                if httpx.get(self.url + "/api/runs", timeout=1).status_code in (200, 401):
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError(f"server did not come up:\n{self.log_path.read_text()}")

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks, as in a crash."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()

    def api(self, method: str, path: str, **kwargs) -> httpx.Response:  # type: ignore[no-untyped-def]
        return httpx.request(method, self.url + path, timeout=30, **kwargs)

    def wait_for_run(self, run_id: int, statuses: tuple[str, ...], timeout: float = 120) -> dict:
        deadline = time.monotonic() + timeout
        run: dict = {}
        while time.monotonic() < deadline:
            run = self.api("GET", f"/api/runs/{run_id}").json()
            if run["status"] in statuses:
                return run
            time.sleep(0.2)
        worker_log = self.data_dir / "runs" / str(run_id) / "worker.log"
        raise AssertionError(
            f"run {run_id} stayed {run.get('status')} (wanted {statuses}); error={run.get('error')}\n"
            f"worker log:\n{worker_log.read_text() if worker_log.exists() else '(none)'}"
        )


def _postgres_available() -> str | None:
    try:
        import psycopg

        with psycopg.connect(POSTGRES_ADMIN_URL, connect_timeout=3):
            return None
    except Exception as error:  # noqa: BLE001 - any failure means "skip with the reason"
        return f"PostgreSQL not reachable at {POSTGRES_ADMIN_URL}: {error}"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    yield from _fresh_postgres_database()


@pytest.fixture(scope="module")
def module_postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database shared by one module's tests."""
    yield from _fresh_postgres_database()


def _fresh_postgres_database() -> Iterator[str]:
    reason = _postgres_available()
    if reason:
        pytest.skip(reason)
    import psycopg

    name = f"orpo_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    yield f"{base}/{name}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# Tests keep their models, datasets and output folders under the temporary directory, so that is the
# test dashboard's allowed root for all three (tests/server/test_paths.py narrows it).
TEST_PATH_ROOTS = {
    "ORPO_DASH_DATA_ROOTS": tempfile.gettempdir(),
    "ORPO_DASH_MODEL_ROOTS": tempfile.gettempdir(),
    "ORPO_DASH_OUTPUT_ROOT": tempfile.gettempdir(),
}


def _serve(tmp_path: Path, database_url: str | None, extra_env: dict[str, str] | None = None,
           before_start: Callable[[str, Path], None] | None = None) -> Iterator[LiveServer]:
    data_dir = tmp_path / "dashboard"
    data_dir.mkdir()
    port = free_port()
    url = database_url or f"sqlite:///{data_dir / 'orpo-dash.sqlite3'}"
    if before_start is not None:
        before_start(url, data_dir)  # e.g. users made by the CLI, before the server reads the database
    server = LiveServer(url=f"http://127.0.0.1:{port}", port=port, database_url=url, data_dir=data_dir,
                        extra_env={**TEST_PATH_ROOTS, **(extra_env or {})})
    server.start()
    try:
        yield server
    finally:
        server.stop()


def assert_no_server_tracebacks(server: LiveServer) -> None:
    """Every refusal answered cleanly: nothing in the server's log came from an unhandled exception."""
    assert server.log_path is not None
    log = server.log_path.read_text()
    assert "Traceback" not in log and "Exception in ASGI" not in log, log[-4000:]


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[LiveServer]:
    """A real dashboard on a free port with a fresh SQLite file."""
    yield from _serve(tmp_path, None)


def serve_with_auth(
    tmp_path: Path, extra_env: dict[str, str] | None = None, users: tuple[str, ...] | None = None,
) -> Iterator[LiveServer]:
    """A dashboard started with auth on, with the users in tests/accounts.py (or some of them), made by the CLI."""
    from tests.accounts import USERS, add_user

    def add_users(url: str, data_dir: Path) -> None:
        for name, role in USERS.items():
            if users is None or name in users:
                created = add_user(url, data_dir, name, role)
                assert created.returncode == 0, created.stderr

    yield from _serve(tmp_path, None, {"ORPO_DASH_AUTH": "1", "ORPO_DASH_LAUNCH_WORKERS": "0", **(extra_env or {})},
                      before_start=add_users)


@pytest.fixture
def auth_server(tmp_path: Path) -> Iterator[LiveServer]:
    """A real dashboard with auth on (users alice admin, bob and dave members, carol viewer); no local workers."""
    yield from serve_with_auth(tmp_path)


@pytest.fixture
def live_server_postgres(tmp_path: Path, postgres_url: str) -> Iterator[LiveServer]:
    """A real dashboard on a free port backed by a fresh PostgreSQL database."""
    yield from _serve(tmp_path, postgres_url)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama + BPE tokenizer with a chat template, saved like any local model."""
    from tests.trainer.conftest import build_model, build_tokenizer

    folder = tmp_path_factory.mktemp("tiny-model")
    tokenizer = build_tokenizer()
    model = build_model(len(tokenizer))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_dataset_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.trainer.conftest import PAIRS

    path = tmp_path_factory.mktemp("data") / "prefs.jsonl"
    path.write_text("".join(json.dumps(pair) + "\n" for pair in PAIRS * 3))
    return path


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
