"""An alert that opens reaches a configured webhook as Slack-compatible JSON, without slowing ingestion."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from tests.conftest import _serve, free_port
from trainer.streaming import StreamingReporter


@pytest.fixture
def webhook_inbox():  # type: ignore[no-untyped-def]
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/hook", received
    server.shutdown()


def test_non_finite_loss_posts_a_slack_message(tmp_path: Path, webhook_inbox, tiny_dataset_file) -> None:  # type: ignore[no-untyped-def]
    url, received = webhook_inbox
    for server in _serve(tmp_path, None, {"ORPO_DASH_ALERT_WEBHOOK_URL": url}):
        created = server.api("POST", "/api/runs", params={"launch": "false"}, json={"dataset": str(tiny_dataset_file), "name": "nan-run"}).json()
        reporter = StreamingReporter(server.url, created["id"], created["worker_token"])
        for step in range(1, 6):
            reporter.metrics(step, {"loss": 1.0 / step, "nll_loss": 1.0})
        reporter.metrics(6, {"loss": float("nan"), "nll_loss": 1.0})
        reporter.close(timeout=20)
        deadline = time.monotonic() + 10
        while not received and time.monotonic() < deadline:
            time.sleep(0.05)
    assert received, "the webhook was never called"
    message = received[0]
    assert "non_finite" in message["text"] and "nan-run" in message["text"] and "step 6" in message["text"]
    assert any("Advice" in block["text"]["text"] for block in message["blocks"] if block["type"] == "section")
