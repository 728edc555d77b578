"""A `lost` run on the pages: its own badge, a status filter option, no stop button, and the error
callout saying the worker was lost, with the last log lines."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from websockets.sync.client import connect

from tests.conftest import _serve
from tests.pages.conftest import register_run
from tests.server.test_worker_stream import _hello, _send
from trainer.streaming import websocket_url

pytestmark = pytest.mark.browser


def test_a_lost_run_is_badged_filterable_and_explained(tmp_path: Path, page, shot, tiny_dataset_file) -> None:  # type: ignore[no-untyped-def]
    for server in _serve(tmp_path, None, {"ORPO_DASH_WORKER_TIMEOUT": "3"}):
        run_id, token = register_run(server, tiny_dataset_file, name="vanished")
        with connect(websocket_url(server.url, run_id)) as ws:
            _hello(ws, token)
            _send(ws, 1, points=[[1, "loss", 1.0, 0.0]], logs=[[0.0, "stderr", "step 1 done"]])
        deadline = time.monotonic() + 20
        while server.api("GET", f"/api/runs/{run_id}").json()["status"] != "lost":
            assert time.monotonic() < deadline, "the silent run never became lost"
            time.sleep(0.2)

        page.goto(server.url + "/")
        page.select_option("#status-filter", "lost")
        page.wait_for_selector(f'tr[data-run-id="{run_id}"] .badge[data-status=lost]')
        assert "status=lost" in page.url

        page.goto(server.url + f"/runs/{run_id}")
        page.wait_for_selector("#run-error:not([hidden])")
        assert page.inner_text("#run-error-title") == "This run's worker was lost."
        assert "step 1 done" in (page.text_content("#run-error-text") or "")
        assert page.locator("#stop-btn").is_hidden()
        assert page.locator("#run-status .badge[data-status=lost]").count() == 1
        shot("lost-run")
