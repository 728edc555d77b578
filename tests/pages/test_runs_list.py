"""The runs list: sort, status filter, text search, rename/tag, delete with confirmation, export of a
selection (CSV and JSON), and "Compare selected"."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest

from tests.pages.conftest import register_run
from trainer.streaming import StreamingReporter

pytestmark = pytest.mark.browser


def _seed(server, dataset, name: str, final_loss: float, status: str, error: str | None = None) -> int:  # type: ignore[no-untyped-def]
    run_id, token = register_run(server, dataset, name=name)
    reporter = StreamingReporter(server.url, run_id, token)
    reporter.status("running", total_steps=20)
    for step in range(1, 11):
        reporter.metrics(step, {"loss": final_loss + (10 - step) * 0.05, "accuracy": 0.5 + step / 40})
    if status != "running":
        reporter.status(status, error=error)
    reporter.close(timeout=30)
    return run_id


def _names(page) -> list[str]:  # type: ignore[no-untyped-def]
    return page.eval_on_selector_all("#runs-body tr .run-name-cell a", "links => links.map(a => a.textContent)")


def _wait_names(page, expected: list[str]) -> None:  # type: ignore[no-untyped-def]
    page.wait_for_function(
        "(expected) => JSON.stringify([...document.querySelectorAll('#runs-body tr .run-name-cell a')]"
        ".map(a => a.textContent)) === JSON.stringify(expected)",
        arg=expected,
    )


def _row_action(page, run_id: int, action: str) -> None:  # type: ignore[no-untyped-def]
    page.click(f'tr[data-run-id="{run_id}"] summary')
    page.click(f'tr[data-run-id="{run_id}"] [data-action="{action}"]')


def test_sort_filter_search_rename_export_compare_and_delete(live_server, page, shot, tiny_dataset_file) -> None:  # type: ignore[no-untyped-def]
    alpha = _seed(live_server, tiny_dataset_file, "alpha baseline", 0.8, "completed")
    bravo = _seed(live_server, tiny_dataset_file, "bravo sweep", 1.5, "failed", error="RuntimeError: CUDA out of memory")
    charlie = _seed(live_server, tiny_dataset_file, "charlie live", 1.1, "running")

    page.goto(live_server.url + "/")
    _wait_names(page, ["charlie live", "bravo sweep", "alpha baseline"])  # newest first
    assert page.locator(f'tr[data-run-id="{bravo}"] .badge[data-status=failed]').count() == 1

    # Sort by latest loss: highest first, then lowest first.
    page.click("th[data-sort-key=loss] button")
    _wait_names(page, ["bravo sweep", "charlie live", "alpha baseline"])
    assert page.get_attribute("th[data-sort-key=loss]", "aria-sort") == "descending"
    page.click("th[data-sort-key=loss] button")
    _wait_names(page, ["alpha baseline", "charlie live", "bravo sweep"])
    assert page.get_attribute("th[data-sort-key=loss]", "aria-sort") == "ascending"

    # Status filter and text search (both kept in the URL).
    page.select_option("#status-filter", "failed")
    _wait_names(page, ["bravo sweep"])
    assert "status=failed" in page.url
    page.select_option("#status-filter", "")
    _wait_names(page, ["alpha baseline", "charlie live", "bravo sweep"])
    page.fill("#run-search", "CHARL")
    _wait_names(page, ["charlie live"])
    page.fill("#run-search", "")
    _wait_names(page, ["alpha baseline", "charlie live", "bravo sweep"])

    # Rename and tag; tags are searchable.
    _row_action(page, alpha, "rename")
    page.locator("#rename-dialog").wait_for(state="visible")
    assert page.input_value("#rename-name") == "alpha baseline"
    page.fill("#rename-name", "alpha (paper λ)")
    page.fill("#rename-tags", "baseline, paper")
    page.click("#rename-save")
    page.wait_for_selector(f'tr[data-run-id="{alpha}"] .tag:text("paper")')
    assert live_server.api("GET", f"/api/runs/{alpha}").json()["tags"] == ["baseline", "paper"]
    page.fill("#run-search", "paper")
    _wait_names(page, ["alpha (paper λ)"])
    page.fill("#run-search", "")

    # Select two runs: export the selection as one CSV and one JSON file.
    page.check(f'tr[data-run-id="{alpha}"] .select-run')
    page.check(f'tr[data-run-id="{charlie}"] .select-run')
    assert page.inner_text("#selection-count") == "2 selected"
    shot("runs-list-selected")
    with page.expect_download() as download_info:
        page.click("#export-csv-btn")
    # Built and streamed by the server, not stitched together in the page.
    assert download_info.value.url.endswith(f"/api/export?runs={alpha},{charlie}&format=csv")
    assert download_info.value.suggested_filename == f"orpo-runs-{alpha}-{charlie}.csv"
    rows = list(csv.DictReader(io.StringIO(open(download_info.value.path()).read())))
    assert set(rows[0]) == {"run_id", "step", "name", "value", "time"}
    assert {int(r["run_id"]) for r in rows} == {alpha, charlie}
    assert sum(1 for r in rows if int(r["run_id"]) == alpha and r["name"] == "loss") == 10
    with page.expect_download() as download_info:
        page.click("#export-json-btn")
    assert download_info.value.url.endswith(f"/api/export?runs={alpha},{charlie}&format=json")
    exported = json.loads(open(download_info.value.path()).read())
    assert [item["run"]["id"] for item in exported] == [alpha, charlie]
    assert all(len(item["points"]) == 20 for item in exported)

    # A single run's export keeps its non-ASCII name (RFC 5987 filename*).
    response = live_server.api("GET", f"/api/runs/{alpha}/export?format=csv")
    assert response.status_code == 200
    assert "filename*=UTF-8''alpha%20%28paper%20%CE%BB%29-metrics.csv" in response.headers["content-disposition"]

    # Compare selected.
    page.click("#compare-btn")
    page.wait_for_url(re.compile(rf"/compare\?runs={alpha},{charlie}$"))
    page.wait_for_selector(f'#run-legend a[data-run-id="{charlie}"]')
    assert page.locator("#run-legend a").count() == 2

    # Delete with confirmation: cancelling keeps the run, confirming removes it.
    page.goto(live_server.url + "/")
    _wait_names(page, ["charlie live", "bravo sweep", "alpha (paper λ)"])
    _row_action(page, bravo, "delete")
    page.locator("#confirm-dialog").wait_for(state="visible")
    assert "bravo sweep" in page.inner_text("#confirm-title")
    page.click("#confirm-cancel")
    assert page.locator(f'tr[data-run-id="{bravo}"]').count() == 1
    assert live_server.api("GET", f"/api/runs/{bravo}").status_code == 200
    _row_action(page, bravo, "delete")
    page.click("#confirm-ok")
    _wait_names(page, ["charlie live", "alpha (paper λ)"])
    assert live_server.api("GET", f"/api/runs/{bravo}").status_code == 404
