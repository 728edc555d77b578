"""Issue 17 part 1 in the browser: the new-run form's Sweep mode (the run count and the estimate before
launch, a bad axis refused beside its field with nothing created), the sweep page (its runs, Stop all,
the not-found page, a phone's width) and the runs list grouped by sweep. These use a dashboard that
starts no workers, so the sweep's runs stay queued; tests/pages/test_sweeps_training.py trains one."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import LiveServer, _serve
from tests.pages.conftest import log_in_page, register_run
from tests.pages.realistic import Shape, stream_run

pytestmark = pytest.mark.browser

MOBILE = {"width": 390, "height": 844}


@pytest.fixture
def queued_server(tmp_path: Path) -> Iterator[LiveServer]:
    """A dashboard that launches no workers: a sweep's runs wait, queued, until stopped."""
    yield from _serve(tmp_path, None, {"ORPO_DASH_LAUNCH_WORKERS": "0"})


def fmt_duration(seconds: float) -> str:
    """static/js/common.js fmtDuration."""
    seconds = max(0, round(seconds))
    h, m, s = seconds // 3600, (seconds % 3600) // 60, seconds % 60
    return f"{h}h {m:02d}m" if h else f"{m}m {s:02d}s" if m else f"{s}s"


def _wait_verdict(page: Any, state: str) -> str:
    page.wait_for_selector(f'#validate-status[data-state="{state}"]')
    return page.inner_text("#validate-status")


def test_sweep_form_counts_runs_estimates_time_refuses_a_bad_axis_and_starts(
    queued_server, page, shot, tiny_dataset_file
) -> None:  # type: ignore[no-untyped-def]
    server = queued_server
    # One completed run of the default model: what the estimate times a step by.
    timing, _ = stream_run(server, tiny_dataset_file, "timing run", total=30, steps=30, shape=Shape(), status="completed")

    page.goto(server.url + "/runs/new")
    assert page.locator("#sweep-card").is_hidden() and page.inner_text("#submit-btn") == "Start run"
    page.check("#sweep-toggle")
    page.locator("#sweep-card").wait_for(state="visible")
    assert page.inner_text("#submit-btn") == "Start sweep" and "sweep=1" in page.url
    assert page.inner_text('label[for="f-name"]') == "Sweep name"

    page.fill("#f-dataset", str(tiny_dataset_file))
    page.fill("#f-beta", "0.05, 0.1, 0.25, 0.5")
    page.fill("#f-learning_rate", "log 5e-6..5e-5, 2 values")
    page.fill("#f-sweep_seeds", "2")
    assert "16 runs" in _wait_verdict(page, "ok")
    assert page.inner_text("#sweep-run-count") == "16"
    assert page.inner_text("#sweep-shape") == "beta: 4 values × learning_rate: 2 values × 2 seeds"
    assert page.inner_text("#sweep-values-learning_rate") == "2 values swept: 5e-6, 5e-5"
    assert page.inner_text("#sweep-values-beta") == "4 values swept: 0.05, 0.1, 0.25, 0.5"
    assert "is-axis" in (page.get_attribute('[data-field="beta"]', "class") or "")
    # The estimate on the page is the server's, for the same sweep.
    body = {"config": {"dataset": str(tiny_dataset_file)}, "axes": {"beta": "0.05, 0.1, 0.25, 0.5",
            "learning_rate": "log 5e-6..5e-5, 2 values"}, "seeds": 2}
    preview = server.api("POST", "/api/sweeps/preview", json=body).json()
    assert preview["run_count"] == 16 and preview["estimated_seconds"] is not None
    assert page.inner_text("#sweep-estimate") == fmt_duration(preview["estimated_seconds"])
    assert "median of 1 completed run" in page.inner_text("#sweep-basis")
    assert page.locator("#preview-table").is_visible()  # the dataset preview still comes with it
    shot("sweep-form")

    # A bad axis: the message sits beside beta, the count is gone, and Start creates nothing.
    page.fill("#f-beta", "0.1, lots")
    _wait_verdict(page, "error")
    page.locator("#error-beta").wait_for(state="visible")
    assert page.inner_text("#error-beta").startswith("beta: 'lots' is not a number; write a list like")
    assert page.inner_text("#sweep-run-count") == "–"
    page.click("#submit-btn")
    page.locator("#error-beta").wait_for(state="visible")
    assert page.url.split("?")[0].endswith("/runs/new")
    assert server.api("GET", "/api/sweeps").json() == []
    assert [r["id"] for r in server.api("GET", "/api/runs").json()] == [timing]
    shot("sweep-form-error")

    # Random: a sample of three settings, twice each (seeds); the count field appears only in this mode.
    page.fill("#f-beta", "0.1, 0.2")
    assert page.locator("#f-sweep_count").is_hidden()
    page.select_option("#f-sweep_mode", "random")
    page.locator("#f-sweep_count").wait_for(state="visible")
    page.fill("#f-sweep_count", "3")
    page.fill("#f-name", "lr search")
    page.check("#f-sweep_stop_on_critical")
    page.wait_for_function("() => document.getElementById('sweep-run-count').textContent === '6'")
    assert page.inner_text("#sweep-shape") == "random sample of 3 settings × 2 seeds"

    page.click("#submit-btn")
    page.wait_for_url(re.compile(r"/sweeps/\d+$"))
    sweep_id = int(page.url.rsplit("/", 1)[1])
    sweep = server.api("GET", f"/api/sweeps/{sweep_id}").json()
    assert sweep["name"] == "lr search" and sweep["mode"] == "random" and sweep["seeds"] == 2
    assert sweep["stop_on_critical"] is True and len(sweep["runs"]) == 6
    page.wait_for_selector("#sweep-runs tbody tr")
    assert page.inner_text("#sweep-name") == "lr search"
    assert page.locator("#sweep-runs tbody tr").count() == 6
    assert page.locator('#sweep-runs tbody tr[data-status="queued"]').count() == 6
    assert page.locator('[data-status-count="queued"]').inner_text().startswith("6")
    # Each row shows the values the server gave that run.
    for run in sweep["runs"]:
        row = page.locator(f'#sweep-runs tr[data-run-id="{run["id"]}"]')
        assert float(row.locator('td[data-field="beta"]').inner_text()) == pytest.approx(run["values"]["beta"], rel=1e-3)
        assert float(row.locator('td[data-field="learning_rate"]').inner_text()) == pytest.approx(run["values"]["learning_rate"], rel=1e-3)
        assert int(row.locator('td[data-field="seed"]').inner_text()) == run["seed"]
    assert page.locator("#sweep-settings tbody tr").count() == 3
    assert page.get_attribute("#parcoords", "data-line-count") == "0"  # nothing evaluated yet
    assert "have no" in page.inner_text("#parcoords-note")


def test_single_run_mode_is_untouched_by_a_sweep_left_half_typed(queued_server, page, tiny_dataset_file) -> None:  # type: ignore[no-untyped-def]
    """Sweep off again: an axis text left in a field is an error of the single-run form, as before."""
    page.goto(queued_server.url + "/runs/new?sweep=1")
    assert page.is_checked("#sweep-toggle") and page.locator("#sweep-card").is_visible()
    page.fill("#f-dataset", str(tiny_dataset_file))
    page.fill("#f-beta", "0.1, 0.2")
    _wait_verdict(page, "ok")
    page.uncheck("#sweep-toggle")
    page.locator("#sweep-card").wait_for(state="hidden")
    assert page.inner_text("#submit-btn") == "Start run" and "sweep=1" not in page.url
    assert page.locator(".sweep-values").count() == 0 and page.locator("#sweep-summary").is_hidden()
    _wait_verdict(page, "error")
    page.locator("#error-beta").wait_for(state="visible")
    page.fill("#f-beta", "0.2")
    assert "looks good" in _wait_verdict(page, "ok")
    page.click("#submit-btn")
    page.wait_for_url(re.compile(r"/runs/\d+$"))
    assert queued_server.api("GET", "/api/sweeps").json() == []


def test_stop_all_group_by_sweep_not_found_and_phone_width(queued_server, page, shot, tiny_dataset_file) -> None:  # type: ignore[no-untyped-def]
    server = queued_server
    created = server.api("POST", "/api/sweeps", json={
        "name": "beta sweep", "config": {"dataset": str(tiny_dataset_file)}, "axes": {"beta": "0.1, 0.2, 0.4"}})
    assert created.status_code == 201, created.text
    sweep_id, run_ids = created.json()["id"], created.json()["run_ids"]
    loose, _ = register_run(server, tiny_dataset_file, name="not in a sweep")

    page.goto(f"{server.url}/sweeps/{sweep_id}")
    page.wait_for_selector("#sweep-runs tbody tr")
    assert page.locator("#sweep-runs tbody tr").count() == 3
    assert (page.get_attribute("#compare-link", "href") or "").endswith(f"/compare?sweep={sweep_id}")
    assert page.get_attribute("#live-state", "data-state") == "live"
    # Stop all, through the confirm dialog; Cancel first does nothing.
    page.click("#stop-all-btn")
    page.locator("#confirm-dialog").wait_for(state="visible")
    assert "3 runs" in page.inner_text("#confirm-message")
    page.click("#confirm-cancel")
    assert all(r["status"] == "queued" for r in server.api("GET", f"/api/sweeps/{sweep_id}").json()["runs"])
    page.click("#stop-all-btn")
    page.click("#confirm-ok")
    page.wait_for_function("() => document.querySelectorAll('#sweep-runs tbody tr[data-status=stopped]').length === 3")
    page.wait_for_selector('#live-state[data-state="finished"]')
    assert page.is_disabled("#stop-all-btn")
    assert {r["status"] for r in server.api("GET", f"/api/runs?sweep={sweep_id}").json()} == {"stopped"}
    shot("sweep-stopped")

    # Every run says which sweep it belongs to; the runs list groups them under the sweep's heading.
    runs = server.api("GET", "/api/runs").json()
    assert {r["id"]: r["sweep_id"] for r in runs} == {**{i: sweep_id for i in run_ids}, loose: None}
    page.goto(server.url + "/")
    page.wait_for_selector(f'tr[data-run-id="{loose}"]')
    assert page.locator("tr.sweep-heading").count() == 0
    page.check("#group-sweeps")
    heading = page.locator(f'tr.sweep-heading[data-sweep-id="{sweep_id}"]')
    heading.wait_for()
    assert "group=sweep" in page.url
    assert heading.locator("a").first.inner_text() == "beta sweep"
    assert heading.locator("a").first.get_attribute("href") == f"/sweeps/{sweep_id}"
    assert "3 runs: 3 stopped" in heading.inner_text()
    # Under its heading a run is named by its values; the full name stays in its tooltip.
    link = page.locator(f'tr[data-run-id="{run_ids[0]}"] a[data-fk="{run_ids[0]}:open"]')
    assert link.inner_text() == "beta=0.1 seed=42" and link.get_attribute("title") == "beta sweep · beta=0.1 seed=42"
    # The rows in order: the sweep's heading, its three runs, then the runs of no sweep.
    order = page.locator("#runs-body tr").evaluate_all(
        "rows => rows.map(r => r.classList.contains('sweep-heading') ? 'h' + r.dataset.sweepId : Number(r.dataset.runId))")
    assert order[0] == f"h{sweep_id}" and sorted(order[1:4]) == sorted(run_ids) and order[4:] == ["h", loose]
    shot("runs-grouped-by-sweep")
    page.reload()
    page.wait_for_selector(f'tr.sweep-heading[data-sweep-id="{sweep_id}"]')
    assert page.is_checked("#group-sweeps")
    page.click(f'tr.sweep-heading[data-sweep-id="{sweep_id}"] a[href="/sweeps/{sweep_id}"]')
    page.wait_for_url(f"**/sweeps/{sweep_id}")
    # Compare: the sweep's runs side by side.
    page.click("#compare-link")
    page.wait_for_url(f"**/compare?sweep={sweep_id}")
    assert page.get_attribute("#compare-page", "data-run-ids") == ",".join(map(str, run_ids))

    # A phone: nothing scrolls sideways, the sweep page or the grouped list.
    page.set_viewport_size(MOBILE)
    for path in (f"/sweeps/{sweep_id}", "/?group=sweep"):
        page.goto(server.url + path)
        page.wait_for_load_state("networkidle")
        width, inner = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
        assert width <= inner, f"{path} is {width} px wide at {inner} px"
    shot("layout-390-runs-grouped")
    page.goto(f"{server.url}/sweeps/{sweep_id}")
    page.wait_for_selector("#sweep-runs tbody tr")
    shot("layout-390-sweep")

    # No such sweep: the site's not-found page.
    for path in ("/sweeps/999999", "/sweeps/abc", "/sweeps/99999999999999999999"):
        response = page.goto(server.url + path)
        assert response is not None and response.status == 404
        assert "no sweep with id" in page.inner_text(".not-found")


def test_stop_all_follows_the_callers_role(page, tmp_path: Path, tiny_dataset_file: Path) -> None:  # type: ignore[no-untyped-def]
    """Stop all is drawn disabled, with the reason, for a viewer and for a member who did not start the
    sweep (the API answers 403 to both); the viewer's Sweep form calls nothing that would answer 403."""
    from tests.accounts import login
    from tests.conftest import serve_with_auth

    refused: list[str] = []
    page.on("response", lambda response: refused.append(response.url) if response.status == 403 else None)

    def stop_all(server: LiveServer, sweep_id: int) -> str | None:
        page.goto(f"{server.url}/sweeps/{sweep_id}")
        page.wait_for_selector('#live-state[data-state="live"]')
        return page.get_attribute("#stop-all-btn", "title") if page.is_disabled("#stop-all-btn") else None

    for server in serve_with_auth(tmp_path, users=("bob", "carol", "dave")):
        bob = login(server.url, "bob")
        created = bob.post("/api/sweeps", json={"name": "bob's", "config": {"dataset": str(tiny_dataset_file)},
                                                "axes": {"beta": "0.1, 0.2"}})
        bob.close()
        assert created.status_code == 201, created.text
        sweep_id = created.json()["id"]

        log_in_page(page, server, "carol")  # a viewer
        assert stop_all(server, sweep_id) == "needs the member role"
        page.goto(server.url + "/runs/new?sweep=1")
        page.fill("#f-beta", "0.1, 0.3")
        page.wait_for_timeout(800)
        assert page.is_disabled("#submit-btn") and page.inner_text("#sweep-run-count") == "–"
        log_in_page(page, server, "dave")  # a member who did not start it
        assert stop_all(server, sweep_id) == "started by bob; only they or an admin can do this"
        assert refused == [], "a page called an API that answers 403"
        log_in_page(page, server, "bob")
        assert stop_all(server, sweep_id) is None
