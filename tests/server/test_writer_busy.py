"""A request whose write waits behind a stuck one answers 503 instead of hanging."""

from __future__ import annotations

import threading
from pathlib import Path

from sqlalchemy.orm import Session

from tests.server.in_process import in_process_client, register_run


def test_a_write_stuck_behind_another_answers_503_and_the_writer_recovers(tmp_path: Path, tiny_dataset_file: Path) -> None:
    with in_process_client(tmp_path) as client:
        run_id = register_run(client, tiny_dataset_file, "busy")
        writer = client.app.state.writer  # type: ignore[attr-defined]
        writer.wait_timeout = 0.3
        gate = threading.Event()

        def hold(_session: Session) -> bool:
            return gate.wait(30)

        blocker = writer.submit(hold)
        try:
            response = client.patch(f"/api/runs/{run_id}", json={"name": "renamed"})
            assert response.status_code == 503
            assert "database writer is busy" in response.json()["detail"]
            assert "Retry" in response.json()["detail"]
            assert response.headers["retry-after"].isdigit()
        finally:
            gate.set()
        assert blocker.result(timeout=10) is True
        writer.submit(lambda _session: None).result(timeout=10)  # first in, first out: the rename is behind us
        # The queued rename was still made once the writer caught up, and the writer serves on.
        assert client.get(f"/api/runs/{run_id}").json()["name"] == "renamed"
        assert client.patch(f"/api/runs/{run_id}", json={"name": "again"}).status_code == 200
