"""Issue 16's acceptance path for one click to the fixed run: an alert -> "Clone with this fix" -> the
new-run form pre-filled with the change highlighted -> start -> the run trains (a real tiny-model
worker) -> the compare view with both runs."""

from __future__ import annotations

import re

import pytest

from tests.over_penalized import BETA, STEPS, over_penalized_metrics
from tests.pages.conftest import register_run
from trainer.streaming import StreamingReporter

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_alert_clone_with_this_fix_start_and_compare_both_runs(
    live_server, page, shot, tiny_model_dir, tiny_dataset_file
) -> None:  # type: ignore[no-untyped-def]
    # The parent: a beta-10 run on the tiny model, its over-penalized metrics streamed through the real
    # worker protocol, so the server's own detectors raise the alert and its suggested change.
    parent_id, token = register_run(
        live_server, tiny_dataset_file, name="beta ten", model=str(tiny_model_dir), beta=BETA, max_steps=STEPS,
        batch_size=2, max_length=64, max_prompt_length=32, eval_fraction=0.25, seed=0,
    )
    reporter = StreamingReporter(live_server.url, parent_id, token)
    reporter.status("running", total_steps=STEPS)
    for step in range(1, STEPS + 1):
        reporter.metrics(step, over_penalized_metrics(step))
    reporter.status("completed")
    reporter.close(timeout=30)

    page.goto(f"{live_server.url}/runs/{parent_id}")
    fix = page.locator("#alerts-list li[data-kind=over_penalization] [data-fix-alert]")
    fix.wait_for()
    assert fix.inner_text() == "Clone with this fix"
    alert_id = int(fix.get_attribute("data-fix-alert"))
    row = page.locator("#alerts-list li[data-kind=over_penalization]").inner_text()
    assert "beta is 10 (the paper uses 0.1)" in row and "beta 10 → 1" in row
    shot("clone-with-fix-alert")
    fix.click()

    # The form: the parent's config, with beta changed as the alert suggests, marked and explained.
    page.wait_for_url(re.compile(rf"/runs/new\?clone={parent_id}&fix={alert_id}$"))
    changed = page.locator(".field.changed-by-alert")
    changed.wait_for()
    assert changed.count() == 1 and changed.get_attribute("data-field") == "beta"
    assert page.input_value("#f-beta") == "1"
    assert page.inner_text("#fix-note-beta") == f"Changed by alert over penalization (#{alert_id}): from 10 to 1"
    assert page.input_value("#f-model") == str(tiny_model_dir)  # the rest comes from the parent
    assert page.input_value("#f-dataset") == str(tiny_dataset_file)
    assert page.input_value("#f-max_length") == "64"
    assert "to fix over penalization" in page.inner_text("#clone-banner")
    page.wait_for_function("() => document.getElementById('validate-status').textContent.startsWith('Configuration')")
    shot("clone-with-fix-form")

    page.fill("#f-max_steps", "6")  # a short run is enough to see it train
    page.click("#submit-btn")
    page.wait_for_url(re.compile(r"/runs/\d+$"), timeout=30_000)
    child_id = int(page.url.rsplit("/", 1)[1])
    lineage = page.inner_text("#run-lineage")
    assert f"Cloned from run beta ten (#{parent_id}) to fix over penalization (alert #{alert_id}: beta 10 → 1)" \
        in " ".join(lineage.split())

    child = live_server.wait_for_run(child_id, ("completed", "failed"), timeout=240)
    assert child["status"] == "completed", child.get("error")
    assert (child["config"]["beta"], child["parent_run_id"], child["from_alert_id"]) == (1.0, parent_id, alert_id)
    assert child["last_step"] == 6

    shot("clone-with-fix-run")
    page.click("#compare-with-parent", timeout=60_000)  # a generous wait: the machine may be busy training
    page.wait_for_url(re.compile(rf"/compare\?runs={parent_id},{child_id}$"))
    for run_id in (parent_id, child_id):
        page.locator(f"#run-legend a[data-run-id='{run_id}']").wait_for()
    page.wait_for_function("() => document.querySelector('#diff-table') && /beta/.test(document.querySelector('#diff-table').textContent)")
    diff = page.inner_text("#diff-table")
    assert "beta" in diff and "10" in diff
    page.wait_for_function("() => Number(document.querySelector('[data-metric-group=loss]').dataset.pointCount) > 0")
    shot("clone-with-fix-compare")
