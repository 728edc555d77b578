"""Issue 17 part 2 in a browser: the Import page uploads a TRL checkpoint's trainer_state.json (written by
transformers' TrainerState) with a progress bar, opens the new run, whose charts hold the logged points and
whose alerts panel shows what the alert engine found; a broken file gets the reader's message instead.
Every other format through the page: tests/pages/test_import_formats.py."""

from __future__ import annotations

import pytest

from tests.import_fixtures import write_trainer_state
from tests.over_penalized import STEPS
from tests.pages.conftest import point_count

pytestmark = pytest.mark.browser


def test_import_page_uploads_a_trainer_state_and_opens_the_run_with_charts_and_alerts(  # type: ignore[no-untyped-def]
    live_server, page, shot, tmp_path
) -> None:
    folder = write_trainer_state(tmp_path / "checkpoint-80")
    page.goto(live_server.url + "/")
    page.click("#import-link")
    page.wait_for_url("**/import")
    assert page.locator("#import-btn").is_disabled()  # nothing chosen yet
    formats = page.locator("#import-formats").inner_text()
    assert "Weights & Biases" in formats and "run-<id>.wandb" in formats and "trainer_state.json" in formats

    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"step": 1, "loss": 0.7}\n{"step": 2 "loss": 0.6}\n{"step": 3, "loss": 0.5}\n')
    page.set_input_files("#import-file", str(broken))
    page.click("#import-btn")
    error = page.locator("#import-error")
    error.wait_for(state="visible")
    assert "broken.jsonl: line 2 is not valid JSON" in error.inner_text()
    assert "expected one JSON object per line" in error.inner_text()
    shot("import-refused")

    page.set_input_files("#import-file", str(folder / "trainer_state.json"))
    page.fill("#import-name", "from TRL")
    page.click("#import-btn")
    page.wait_for_url("**/runs/*")
    run_id = int(page.url.rsplit("/", 1)[1])
    run = live_server.api("GET", f"/api/runs/{run_id}").json()
    assert run["status"] == "imported" and run["name"] == "from TRL"
    assert page.locator("#run-status [data-status=imported]").is_visible()
    page.wait_for_function("document.querySelector('[data-metric-group=\"loss\"]').dataset.pointCount > 0")
    # Every step of loss, nll_loss and or_loss (from TRL's log_odds_ratio, negated) is drawn.
    assert point_count(page, "loss") >= 3 * STEPS
    assert point_count(page, "preference") > 0 and point_count(page, "logps") > 0
    entry = page.locator("#alerts-list li[data-kind=over_penalization]")
    entry.wait_for()
    assert page.locator("#alert-banner [data-kind=over_penalization]").is_visible()
    assert page.locator("#stop-btn").is_hidden()  # imported runs are terminal
    shot("import-run")
