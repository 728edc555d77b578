"""Browser fixtures: one headless Chromium per session, a fresh page per test that fails the test on
any uncaught JavaScript error, and helpers to feed runs through the real worker protocol."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run",
    # WebGL without a GPU (the sweep page's parcoords chart): SwiftShader, which Chromium is phasing out as
    # an automatic fallback; this keeps it on. Chromium 156 draws with or without it.
    "--enable-unsafe-swiftshader",
]


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium")
    if executable is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(20_000)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    # The dashboard must work offline: any request off the test server is a bug.
    blocked: list[str] = []

    def guard(route: Any) -> None:
        if route.request.url.startswith(("http://127.0.0.1", "ws://127.0.0.1", "data:", "blob:")):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    page.route("**/*", guard)
    yield page
    page.goto("about:blank")  # closes the page's websockets cleanly before the server stops
    context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"
    assert blocked == [], f"the page tried to reach outside the dashboard: {blocked}"


@pytest.fixture
def shot(page: Any, artifacts_dir: Path):  # type: ignore[no-untyped-def]
    """shot("name") saves a full-page screenshot to test-artifacts/pages-<name>.png."""

    def take(name: str) -> Path:
        path = artifacts_dir / f"pages-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take


def register_run(server: Any, dataset: Path, **config: Any) -> tuple[int, str]:
    """A run whose worker is the test itself (no training process): returns (id, worker token)."""
    response = server.api("POST", "/api/runs", params={"launch": "false"}, json={"dataset": str(dataset), **config})
    assert response.status_code == 201, response.text
    body = response.json()
    return body["id"], body["worker_token"]


def point_count(page: Any, group: str) -> int:
    return int(page.get_attribute(f'[data-metric-group="{group}"]', "data-point-count") or 0)


def log_in_page(page: Any, server: Any, name: str) -> None:
    """Log the browser in as `name` (an account made with tests.accounts' PASSWORD), cookies cleared first."""
    from tests.accounts import PASSWORD

    page.context.clear_cookies()
    page.goto(server.url + "/login")
    page.fill("#login-name", name)
    page.fill("#login-password", PASSWORD)
    page.click("#login-submit")
    page.wait_for_url(server.url + "/")
