"""A real `orpo-dash serve` process for benchmarks (same as the tests' fixture, without pytest)."""

from __future__ import annotations

import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Dashboard:
    def __init__(self, database_url: str | None = None, *, launch_workers: bool = False, data_dir: Path | None = None) -> None:
        self.launch_workers = launch_workers
        self.data_dir = data_dir or Path(tempfile.mkdtemp(prefix="orpo-bench-"))
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.database_url = database_url or f"sqlite:///{self.data_dir / 'bench.sqlite3'}"

    def __enter__(self) -> Dashboard:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "orpo_dash.cli", "serve", "--port", str(self.port),
             "--database-url", self.database_url, "--data-dir", str(self.data_dir)],
            stdout=open(self.data_dir / "server.log", "ab"), stderr=subprocess.STDOUT, cwd=REPO_ROOT,
            env={**os.environ, "ORPO_DASH_LAUNCH_WORKERS": str(self.launch_workers).lower()},
        )
        for _ in range(300):
            try:
                if httpx.get(self.url + "/api/runs", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError((self.data_dir / "server.log").read_text())

    def peak_rss_mb(self) -> float:
        """The server process's peak resident memory so far (Linux: VmHWM)."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return math.nan

    def __exit__(self, *exc: object) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=30)

    def register(self, dataset: Path) -> tuple[int, str]:
        body = httpx.post(self.url + "/api/runs", params={"launch": "false"}, json={"dataset": str(dataset)}, timeout=30).json()
        return body["id"], body["worker_token"]


def tiny_dataset(folder: Path) -> Path:
    path = folder / "prefs.jsonl"
    path.write_text('{"prompt": "p", "chosen": "a", "rejected": "b"}\n' * 4)
    return path
