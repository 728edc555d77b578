"""The new-run form: per-field validation messages, the dataset preview, and issue 2's acceptance
path: submit -> run page -> the chart grows live, survives a reload, and the run stops from the page."""

from __future__ import annotations

import re
import time

import pytest

from tests.pages.conftest import point_count

pytestmark = pytest.mark.browser


def test_validation_errors_sit_next_to_their_fields_and_preview_shows_pairs(
    live_server, page, shot, tiny_dataset_file, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    page.goto(live_server.url + "/runs/new")
    missing = str(tmp_path / "nope.jsonl")

    page.fill("#f-dataset", missing)
    page.dispatch_event("#f-dataset", "change")
    dataset_error = page.locator("#error-dataset")
    dataset_error.wait_for(state="visible")
    assert dataset_error.inner_text().strip()
    assert page.input_value("#f-dataset") == missing  # the user's input is kept

    # An out-of-range λ in the (open) ORPO section and a bad warmup ratio in a collapsed section.
    page.fill("#f-beta", "-1")
    page.click("#section-schedule > summary")  # open the collapsed section, type, collapse it again
    page.fill("#f-warmup_ratio", "2")
    page.click("#section-schedule > summary")
    # The automatic re-check after an edit marks the collapsed section, but leaves it closed.
    page.wait_for_selector('#validate-status[data-state="error"]')
    assert page.locator("#section-schedule").get_attribute("open") is None
    assert "has-problem" in (page.locator("#section-schedule").get_attribute("class") or "")
    page.click("#validate-btn")
    page.locator("#error-beta").wait_for(state="visible")
    page.locator("#error-warmup_ratio").wait_for(state="visible")
    assert page.locator("#section-schedule").get_attribute("open") is not None  # opened to show its error
    assert page.input_value("#f-beta") == "-1"
    assert page.locator('[data-field="beta"]').get_attribute("class").count("has-error") == 1
    shot("new-run-errors")

    page.fill("#f-beta", "0.2")
    page.fill("#f-warmup_ratio", "0.1")
    page.fill("#f-dataset", str(tiny_dataset_file))
    page.dispatch_event("#f-dataset", "change")
    page.locator("#preview-table").wait_for()
    count = int(page.inner_text("#preview-count"))
    assert count == sum(1 for line in tiny_dataset_file.read_text().splitlines() if line.strip())
    assert "What is the capital of France?" in page.inner_text("#preview-table")
    assert page.locator("#error-dataset").is_hidden()
    shot("new-run-preview")

    # A valid but risky λ gets advice beside the field, not an error: the launch stays the user's call.
    page.fill("#f-beta", "10")
    page.click("#validate-btn")
    page.locator("#advice-beta").wait_for(state="visible")
    assert "over-penalization" in page.inner_text("#advice-beta")
    assert page.locator("#error-beta").is_hidden()
    assert "1 setting risks a problem" in page.inner_text("#validate-status")
    shot("new-run-advice")
    page.fill("#f-beta", "0.2")
    page.click("#validate-btn")
    page.locator("#advice-beta").wait_for(state="hidden")

    # Submitting with an error keeps the user on the form with the message beside the field.
    page.fill("#f-max_steps", "ten")
    page.click("#submit-btn")
    page.locator("#error-max_steps").wait_for(state="visible")
    assert page.url.endswith("/runs/new")
    assert live_server.api("GET", "/api/runs").json() == []


@pytest.mark.slow
def test_submit_opens_live_run_page_that_grows_survives_reload_and_stops(
    live_server, page, shot, tiny_model_dir, tiny_dataset_file
) -> None:  # type: ignore[no-untyped-def]
    page.goto(live_server.url + "/runs/new")
    page.fill("#f-name", "browser acceptance")
    page.fill("#f-model", str(tiny_model_dir))
    page.fill("#f-dataset", str(tiny_dataset_file))
    page.fill("#f-max_steps", "2000")  # long enough to still be training when we stop it
    page.fill("#f-max_length", "64")
    page.fill("#f-max_prompt_length", "32")
    page.click("#submit-btn")
    page.wait_for_url(re.compile(r"/runs/\d+$"), timeout=30_000)
    run_id = int(page.url.rsplit("/", 1)[1])
    assert page.inner_text("#run-name") == "browser acceptance"

    # The loss chart grows from the websocket alone (the run page never polls).
    page.wait_for_function(
        "() => Number(document.querySelector('[data-metric-group=loss]').dataset.pointCount) >= 6", timeout=90_000
    )
    first = point_count(page, "loss")
    page.wait_for_function(
        f"() => Number(document.querySelector('[data-metric-group=loss]').dataset.pointCount) > {first}", timeout=30_000
    )
    assert page.locator("#live-state").get_attribute("data-state") == "live"
    shot("run-live")

    # Reload: everything so far comes back over HTTP, then the socket continues from there.
    before = point_count(page, "loss")
    page.reload()
    page.wait_for_function(
        f"() => Number(document.querySelector('[data-metric-group=loss]').dataset.pointCount) >= {before}"
    )
    after_reload = point_count(page, "loss")
    page.wait_for_function(
        f"() => Number(document.querySelector('[data-metric-group=loss]').dataset.pointCount) > {after_reload}",
        timeout=30_000,
    )
    # No point is drawn twice: each train series holds one point per step.
    duplicates = page.evaluate(
        """() => document.querySelector('[data-metric-group=loss]').data
             .filter(t => t.meta.role === 'raw' && t.meta.train)
             .map(t => t.x.length - new Set(t.x).size)"""
    )
    assert duplicates and all(d == 0 for d in duplicates), duplicates

    # Stop from the page, through the confirmation dialog. The stop request's reply is a snapshot from
    # before the worker stopped ("running"); here it is held until the page has been pushed "stopped",
    # the order a fast worker produces by itself now and then, and must not bring the run back to life.
    def reply_late(route) -> None:  # type: ignore[no-untyped-def]
        reply = route.fetch()
        deadline = time.monotonic() + 60
        while live_server.api("GET", f"/api/runs/{run_id}").json()["status"] != "stopped" and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.0)  # and the push has reached the page
        route.fulfill(response=reply)

    page.route(f"**/api/runs/{run_id}/stop", reply_late)
    page.click("#stop-btn")
    page.locator("#confirm-dialog").wait_for(state="visible")
    page.click("#confirm-ok")
    page.wait_for_selector('#run-status [data-status="stopped"]', timeout=60_000)
    page.locator(".toast", has_text="Stop requested").wait_for(timeout=60_000)  # the late reply was handled
    assert page.locator('#run-status [data-status="stopped"]').count() == 1
    assert page.locator("#stop-btn").is_hidden()
    assert live_server.api("GET", f"/api/runs/{run_id}").json()["status"] == "stopped"
    shot("run-stopped")


def test_the_form_says_which_launcher_starts_the_run(live_server, page, tmp_path) -> None:  # type: ignore[no-untyped-def]
    page.goto(live_server.url + "/runs/new")
    assert "worker processes on the dashboard's machine" in page.inner_text("#launcher-info")

    from tests.conftest import _serve, free_port

    nowhere = f"http://127.0.0.1:{free_port()}"  # a Ray head that is down: the form says so, and still works
    (tmp_path / "ray").mkdir()
    for server in _serve(tmp_path / "ray", None, extra_env={"ORPO_DASH_LAUNCHER": "ray", "ORPO_DASH_RAY_ADDRESS": nowhere}):
        page.goto(server.url + "/runs/new")
        assert f"Ray jobs on the cluster at {nowhere}" in page.inner_text("#launcher-info")
        resources = page.locator("#launcher-resources")
        page.wait_for_function("() => document.getElementById('launcher-resources').textContent.length > 0")
        assert f"could not read the Ray cluster at {nowhere}" in resources.inner_text()
        page.goto("about:blank")


MOBILE = {"width": 390, "height": 844}


def _wait_verdict(page, state: str) -> str:  # type: ignore[no-untyped-def]
    page.wait_for_selector(f"#validate-status[data-state={state}]")
    return page.inner_text("#validate-status")


@pytest.fixture
def hub_cache_server(tmp_path):  # type: ignore[no-untyped-def]
    """A dashboard with the local launcher whose workers see an empty Hugging Face cache."""
    from tests.conftest import _serve

    (tmp_path / "hf-cache").mkdir()
    yield from _serve(tmp_path, None, {"HF_HUB_CACHE": str(tmp_path / "hf-cache")})


def test_the_verdict_follows_every_edit_and_start_asks_about_advice(hub_cache_server, page, shot, tiny_dataset_file) -> None:  # type: ignore[no-untyped-def]
    """Issue 20 points 1 and 2 at 1400x900: no stale "valid" beside a bad value; Start lists the advice and
    asks; a hub model that is not cached is warned about, and its run then fails in seconds."""
    server = hub_cache_server
    page.goto(server.url + "/runs/new")
    assert page.input_value("#f-learning_rate") == "2e-5"  # the one number format, in the form too
    assert "Configuration looks good." in _wait_verdict(page, "ok")

    # An invalid value: the verdict drops "looks good" on the keystroke, then names the problem.
    page.fill("#f-learning_rate", "abc")
    assert page.get_attribute("#validate-status", "data-state") == "checking"
    assert "good" not in page.inner_text("#validate-status") and "valid" not in page.inner_text("#validate-status")
    assert "1 problem" in _wait_verdict(page, "error")
    page.locator("#error-learning_rate").wait_for(state="visible")
    assert "learning_rate must be a number (got 'abc')" in page.inner_text("#error-learning_rate")
    shot("new-run-stale-verdict-fixed")

    # The empty dataset names the field and the way out.
    page.fill("#f-learning_rate", "2e-5")
    page.fill("#f-dataset", "")
    _wait_verdict(page, "error")
    assert page.inner_text("#error-dataset").startswith("dataset is required: choose a .jsonl, .json, .csv or .parquet file")
    assert "keep the bundled default bundled:orpo-demo-prefs" in page.inner_text("#error-dataset")
    page.fill("#f-dataset", str(tiny_dataset_file))

    # Risky but valid settings, and a hub model this machine has not downloaded: advice, no button pressed.
    page.fill("#f-model", "no-such-org/no-such-model")
    page.fill("#f-learning_rate", "5e-3")
    page.fill("#f-beta", "5")
    page.fill("#f-max_steps", "2")
    assert "3 settings risk a problem" in _wait_verdict(page, "advice")
    assert "needs network, not cached here" in page.inner_text("#advice-model")
    assert page.inner_text("#advice-learning_rate").startswith("learning_rate 0.005 is high for full fine-tuning (above 1e-4)")

    # Start shows the advice and asks; "Change settings" goes back to the form and starts nothing.
    page.click("#submit-btn")
    dialog = page.locator("#advice-dialog")
    dialog.wait_for(state="visible")
    items = page.locator("#advice-list li")
    assert sorted(items.evaluate_all("els => els.map(e => e.dataset.field)")) == ["beta", "learning_rate", "model"]
    assert "Start anyway" in page.inner_text("#advice-start") and "Change settings" in page.inner_text("#advice-change")
    shot("new-run-advice-dialog")
    page.click("#advice-change")
    dialog.wait_for(state="hidden")
    # The dialog hides on the click, its "close" event (which moves focus) fires a task later: wait for the move.
    page.wait_for_function("() => document.activeElement && document.activeElement.id === 'f-beta'", timeout=5000)
    assert server.api("GET", "/api/runs").json() == []

    # "Start anyway" launches; the worker cannot get the model and the run fails within seconds, saying why.
    page.click("#submit-btn")
    dialog.wait_for(state="visible")
    page.click("#advice-start")
    page.wait_for_url(re.compile(r"/runs/\d+$"))
    page.wait_for_selector('#run-status [data-status="failed"]', timeout=60_000)
    assert "no-such-org/no-such-model" in page.inner_text("#run-error-headline")
    shot("new-run-hub-model-failed-fast")


def test_the_form_at_390px_asks_before_starting_with_advice(live_server, page, shot, artifacts_dir) -> None:  # type: ignore[no-untyped-def]
    page.set_viewport_size(MOBILE)
    page.goto(live_server.url + "/runs/new")
    _wait_verdict(page, "ok")
    page.fill("#f-beta", "x")
    assert page.get_attribute("#validate-status", "data-state") == "checking"
    _wait_verdict(page, "error")
    page.fill("#f-beta", "5")
    _wait_verdict(page, "advice")
    page.click("#submit-btn")
    page.locator("#advice-dialog").wait_for(state="visible")
    box = page.locator("#advice-dialog").bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= MOBILE["width"]  # fits the screen
    assert page.evaluate("() => document.documentElement.scrollWidth") <= MOBILE["width"]
    shot("new-run-advice-dialog-390")
    page.screenshot(path=str(artifacts_dir / "pages-new-run-advice-dialog-390-screen.png"))  # what the phone shows
    page.click("#advice-change")
    page.locator("#advice-dialog").wait_for(state="hidden")
    assert live_server.api("GET", "/api/runs").json() == []
