"""Issue 20 point 12 on the pages, at 1400x900 and 390 px: a failed run's whole error (not its last line) in
the list's and the run page's status, a queued run's Stop dialog that only cancels, and learning rates
written one way on the list, the run page and compare."""

from __future__ import annotations

import pytest

from tests.conftest import _serve
from tests.pages.realistic import TRACEBACK, Shape, stream_run

pytestmark = pytest.mark.browser

MOBILE = {"width": 390, "height": 844}


@pytest.fixture
def server(tmp_path):  # type: ignore[no-untyped-def]
    """No local workers: a run created from the API stays queued."""
    yield from _serve(tmp_path, None, {"ORPO_DASH_LAUNCH_WORKERS": "0"})


@pytest.mark.parametrize("viewport", ["desktop", "mobile"])
def test_failed_error_in_full_queued_stop_only_cancels_and_one_lr_format(server, page, shot, tiny_dataset_file, viewport) -> None:  # type: ignore[no-untyped-def]
    if viewport == "mobile":
        page.set_viewport_size(MOBILE)
    failed, _ = stream_run(server, tiny_dataset_file, "fp16 overflow", total=20, steps=12,
                           shape=Shape(beta=0.2, lr=2e-5, seed=2), status="failed", error=TRACEBACK)
    queued = server.api("POST", "/api/runs", json={"name": "waits its turn", "dataset": str(tiny_dataset_file),
                                                   "learning_rate": 5e-3, "max_steps": 10}).json()["id"]

    # The list: the failed status carries the whole traceback; learning rates read 2e-5 and 0.005.
    page.goto(server.url + "/")
    page.wait_for_selector(f'tr[data-run-id="{queued}"]')
    assert page.get_attribute(f'tr[data-run-id="{failed}"] td.status-cell', "title") == TRACEBACK
    assert page.get_attribute(f'tr[data-run-id="{queued}"] td.status-cell', "title") is None
    lr_cells = page.locator("#runs-table tbody tr td:nth-child(7)").all_inner_texts()  # the LR column
    assert {"2e-5", "0.005"} <= set(lr_cells), lr_cells
    shot(f"status-details-list-{viewport}")

    # The failed run's page: the cause up front, the whole traceback one click away, and in the status title.
    page.goto(f"{server.url}/runs/{failed}")
    page.wait_for_selector("#run-error:not([hidden])")
    last_line = TRACEBACK.splitlines()[-1]
    assert page.inner_text("#run-error-headline") == last_line
    assert page.get_attribute("#run-status", "title") == TRACEBACK
    assert page.inner_text("#run-error-lines") == f"Full error ({len(TRACEBACK.splitlines())} lines)"
    page.click("#run-error-lines")
    assert page.inner_text("#run-error-text") == TRACEBACK
    assert "lr 2e-5" in page.inner_text("#run-meta")
    page.wait_for_selector("#config-tables code")
    config_lr = page.locator("#config-tables tr", has_text="learning_rate").locator("code").inner_text()
    assert config_lr == "2e-5"
    error_box = page.locator("#run-error").bounding_box()
    assert error_box is not None and error_box["x"] + error_box["width"] <= page.viewport_size["width"]
    shot(f"status-details-failed-run-{viewport}")

    # A queued run's Stop just cancels: no step to finish, no checkpoint to save.
    page.goto(f"{server.url}/runs/{queued}")
    page.wait_for_selector('#run-status [data-status="queued"]')
    page.click("#stop-btn")
    page.locator("#confirm-dialog").wait_for(state="visible")
    message = page.inner_text("#confirm-message")
    assert page.inner_text("#confirm-title") == "Cancel this queued run?"
    assert "has not started yet" in message and "step" not in message and "checkpoint" not in message
    assert page.inner_text("#confirm-ok") == "Cancel run" and page.inner_text("#confirm-cancel") == "Keep it queued"
    assert "lr 0.005" in page.inner_text("#run-meta")
    shot(f"status-details-queued-stop-{viewport}")
    page.click("#confirm-ok")
    page.wait_for_selector('#run-status [data-status="stopped"]')
    page.locator(".toast", has_text="Run cancelled.").wait_for()

    # Compare writes the config the same way.
    page.goto(f"{server.url}/compare?runs={failed},{queued}")
    row = page.locator("#diff-table tr[data-field=learning_rate]")
    row.wait_for()
    assert row.locator("code").all_inner_texts() == ["2e-5", "0.005"]
