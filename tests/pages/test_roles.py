"""Pages follow the caller's role (server/page_rights.py): a viewer is not offered Start, Stop, Clone,
Delete or Rename controls that would answer 403; they are drawn disabled, the reason as their tooltip.
A member sees the same for the runs someone else started; the run's owner sees them enabled."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.accounts import login
from tests.conftest import LiveServer, serve_with_auth
from tests.pages.conftest import log_in_page

pytestmark = pytest.mark.browser

NEEDS_MEMBER = "needs the member role"


def _disabled_because(page: Any, selector: str) -> str | None:
    """The tooltip of a disabled control; None if it is enabled (a link counts as enabled)."""
    control = page.locator(selector)
    control.wait_for(state="attached")
    if control.evaluate("el => el.tagName") == "A" or not control.is_disabled():
        return None
    return str(control.get_attribute("title"))


def _row_controls(page: Any, server: LiveServer, run_id: int) -> dict[str, str | None]:
    page.goto(server.url + "/")
    page.locator(f'tr[data-run-id="{run_id}"]').wait_for()
    page.check(f'[data-fk="{run_id}:select"]')
    return {action: _disabled_because(page, f'[data-fk="{run_id}:{action}"]') for action in ("clone", "rename", "delete")} | {
        "new": _disabled_because(page, "#new-run-link"), "delete selected": _disabled_because(page, "#delete-selected-btn"),
        "export selected": _disabled_because(page, "#export-csv-btn")}


def _run_page_controls(page: Any, server: LiveServer, run_id: int) -> dict[str, str | None]:
    page.goto(f"{server.url}/runs/{run_id}")
    page.wait_for_function("() => document.getElementById('progress-text').textContent !== 'step — / —'")
    assert page.locator("#stop-btn").is_visible()
    return {"stop": _disabled_because(page, "#stop-btn"), "clone": _disabled_because(page, "#clone-link")}


def test_controls_follow_the_callers_role(page: Any, tmp_path: Path, tiny_dataset_file: Path) -> None:
    page.set_default_timeout(60_000)  # many page loads on a shared, busy machine
    refused: list[str] = []
    page.on("response", lambda response: refused.append(response.url) if response.status == 403 else None)
    # The run has no worker: a long worker_timeout keeps it running (and its stop button shown) throughout.
    for server in serve_with_auth(tmp_path, {"ORPO_DASH_WORKER_TIMEOUT": "3600"}, users=("bob", "carol", "dave")):
        bob = login(server.url, "bob")
        created = bob.post("/api/runs", params={"launch": "false"}, json={"dataset": str(tiny_dataset_file)})
        bob.close()
        assert created.status_code == 201, created.text
        run_id = created.json()["id"]  # running, started by bob

        log_in_page(page, server, "carol")  # a viewer
        assert page.locator("nav >> text=New run").count() == 0
        assert _row_controls(page, server, run_id) == {
            "clone": NEEDS_MEMBER, "rename": NEEDS_MEMBER, "delete": NEEDS_MEMBER, "new": NEEDS_MEMBER,
            "delete selected": NEEDS_MEMBER, "export selected": None}
        assert _run_page_controls(page, server, run_id) == {"stop": NEEDS_MEMBER, "clone": NEEDS_MEMBER}
        page.goto(server.url + "/runs/new")
        assert "needs the member role" in page.inner_text("#role-note")
        assert _disabled_because(page, "#submit-btn") == _disabled_because(page, "#validate-btn") == NEEDS_MEMBER
        page.fill("#f-name", "viewer-typed")
        page.press("#f-name", "Enter")  # no implicit submit past a disabled button, and no check either
        page.wait_for_timeout(800)
        assert refused == [], "the viewer's pages called an API that answers 403"

        log_in_page(page, server, "dave")  # a member, not the run's owner
        not_his = "started by bob; only they or an admin can do this"
        assert _row_controls(page, server, run_id) == {
            "clone": None, "rename": None, "delete": not_his, "new": None, "delete selected": not_his, "export selected": None}
        assert _run_page_controls(page, server, run_id) == {"stop": not_his, "clone": None}

        log_in_page(page, server, "bob")  # its owner
        assert _row_controls(page, server, run_id) == {
            "clone": None, "rename": None, "delete": None, "new": None, "delete selected": None, "export selected": None}
        assert _run_page_controls(page, server, run_id) == {"stop": None, "clone": None}
        assert refused == []
