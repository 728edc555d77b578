"""Issue 20 points 7, 8 and 11 in the browser, at 1400x900 and 390x844: the runs list's actions menu is
never clipped, its columns can be chosen and its sort survives a reload; compare puts the summary and
the config diff above the charts, marks a leader only among comparable runs and lets you pick charts;
and no page scrolls sideways on a phone, where Start stays on screen."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.accounts import PASSWORD
from tests.pages.realistic import Shape, stream_run

pytestmark = pytest.mark.browser

MOBILE = {"width": 390, "height": 844}


def _no_sideways_scroll(page: Any) -> tuple[int, int]:
    return page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")


def _menu_fully_usable(page: Any, menu_items: str) -> None:
    """Every item of the open menu is inside the viewport and is what the user would click there
    (elementFromPoint at its centre: nothing clips or covers it)."""
    viewport = page.evaluate("() => [window.innerWidth, window.innerHeight]")
    items = page.locator(menu_items)
    assert items.count() >= 3
    for i in range(items.count()):
        box = items.nth(i).bounding_box()
        assert box is not None
        assert box["x"] >= 0 and box["y"] >= 0, box
        assert box["x"] + box["width"] <= viewport[0] and box["y"] + box["height"] <= viewport[1], (box, viewport)
        hit = page.evaluate(
            "([sel, i, x, y]) => document.querySelectorAll(sel)[i].contains(document.elementFromPoint(x, y))",
            [menu_items, i, box["x"] + box["width"] / 2, box["y"] + box["height"] / 2],
        )
        assert hit, f"menu item {i} is covered or clipped at its centre"


def _one_run(server: Any, dataset: Any, tmp_path: Any, name: str = "only run", **config: Any) -> int:
    run_id, _ = stream_run(server, dataset, name, total=120, steps=120, shape=Shape(seed=5), status="completed",
                           output_dir=tmp_path / name.replace(" ", "-"), eval_every=50, sample_every=100,
                           sample_prompts=["Explain in one sentence why the sky is blue."], **config)
    return run_id


@pytest.mark.parametrize("viewport", ["desktop", "mobile"])
def test_actions_menu_of_the_only_row_is_fully_visible(viewport, live_server, page, shot, tiny_dataset_file, tmp_path) -> None:  # type: ignore[no-untyped-def]
    if viewport == "mobile":
        page.set_viewport_size(MOBILE)
    run_id = _one_run(live_server, tiny_dataset_file, tmp_path)
    page.goto(live_server.url + "/")
    page.click(f'[data-fk="{run_id}:menu"]')
    page.wait_for_selector(f'details.menu[data-menu="{run_id}"][open] .menu-list')
    _menu_fully_usable(page, f'details.menu[data-menu="{run_id}"] .menu-list > *')
    assert _no_sideways_scroll(page)[0] <= _no_sideways_scroll(page)[1]
    page.screenshot(path=str(shot(f"layout-runs-menu-{viewport}").with_name(f"pages-layout-runs-menu-{viewport}-screen.png")))
    # The menu still works: Rename opens its dialog.
    page.click(f'[data-fk="{run_id}:rename"]')
    page.locator("#rename-dialog").wait_for(state="visible")


def test_column_chooser_and_sort_survive_a_reload(live_server, page, shot, tiny_dataset_file, tmp_path) -> None:  # type: ignore[no-untyped-def]
    short = _one_run(live_server, tiny_dataset_file, tmp_path, name="short ctx", max_length=200)
    long = _one_run(live_server, tiny_dataset_file, tmp_path, name="long ctx", max_length=512)
    page.goto(live_server.url + "/")
    page.wait_for_selector(f'tr[data-run-id="{long}"]')

    page.click("#columns-btn")
    page.check('#columns-list input[data-column="config:max_length"]')
    page.check('#columns-list input[data-column="latest:eval/loss"]')
    page.check('#columns-list input[data-column="best:eval/loss"]')
    # The chooser scrolls within itself (dozens of fields); the box itself is on screen.
    chooser = page.locator("#columns-list").bounding_box()
    assert chooser is not None and chooser["y"] >= 0 and chooser["y"] + chooser["height"] <= 900 and chooser["x"] >= 0
    page.keyboard.press("Escape")

    def cell(run_id: int, column: str) -> str:
        return page.inner_text(f'tr[data-run-id="{run_id}"] td[data-column="{column}"]').strip()

    page.wait_for_function("() => document.querySelector('td[data-column=\"best:eval/loss\"]')?.textContent.trim() !== '—'")
    assert cell(short, "config:max_length") == "200" and cell(long, "config:max_length") == "512"
    # The values the server stored: latest from the run, best = the lowest eval loss logged.
    points = live_server.api("GET", f"/api/runs/{short}/metrics", params={"names": "eval/loss"}).json()["series"]["eval/loss"]
    assert len(points["value"]) == 2
    best = float(cell(short, "best:eval/loss"))
    assert best == pytest.approx(min(points["value"]), rel=1e-3)
    assert float(cell(short, "latest:eval/loss")) == pytest.approx(points["value"][-1], rel=1e-3)
    api_best = live_server.api("GET", "/api/runs", params={"best": "eval/loss,learning_rate"}).json()
    assert {r["id"]: r["best"] for r in api_best}[short] == {"eval/loss": min(points["value"])}  # no best learning rate

    # Sort by the chosen config column, ascending then descending: in the URL, and back after a reload.
    page.click('th[data-sort-key="config:max_length"] .sort')
    page.click('th[data-sort-key="config:max_length"] .sort')
    assert re.search(r"sort=config%3Amax_length&dir=desc|sort=config:max_length&dir=desc", page.url), page.url
    order = page.locator("#runs-body tr").evaluate_all("rows => rows.map(r => Number(r.dataset.runId))")
    assert order == [long, short]
    shot("layout-runs-columns")
    page.reload()
    page.wait_for_selector(f'tr[data-run-id="{long}"] td[data-column="config:max_length"]')
    assert page.get_attribute('th[data-sort-key="config:max_length"]', "aria-sort") == "descending"
    assert page.locator("#runs-body tr").evaluate_all("rows => rows.map(r => Number(r.dataset.runId))") == [long, short]
    assert [h.strip() for h in page.locator("#runs-table th[data-extra]").all_inner_texts()] == [
        "max_length", "eval/loss (latest)", "eval/loss (best)"]
    page.wait_for_function("() => document.querySelector('td[data-column=\"best:eval/loss\"]').textContent.trim() !== '—'")

    # Unticking a column takes it away, and that too is remembered.
    page.click("#columns-btn")
    page.uncheck('#columns-list input[data-column="config:max_length"]')
    page.reload()
    page.wait_for_selector(f'tr[data-run-id="{long}"]')
    assert page.locator('td[data-column="config:max_length"]').count() == 0


def test_compare_puts_summary_and_diff_first_and_marks_only_comparable_leaders(live_server, page, shot, tiny_dataset_file) -> None:  # type: ignore[no-untyped-def]
    def run(name: str, seed: int, **config: Any) -> int:
        shape = Shape(seed=seed, beta=config.pop("beta", 0.1), lr=config.pop("lr", 8e-6))
        run_id, _ = stream_run(live_server, tiny_dataset_file, name, total=120, steps=120, shape=shape,
                               status="completed", eval_every=50, **config)
        return run_id

    base = run("base", 1)
    higher_lr = run("lr 2e-5", 2, lr=2e-5)
    longer = run("max_length 512", 3, max_length=512)
    strong = run("λ=1", 4, beta=1.0)

    # Same data and lengths, same λ: every directional metric has a leader, eval metrics listed first.
    page.goto(f"{live_server.url}/compare?runs={base},{higher_lr}")
    page.wait_for_selector('#summary-table tr[data-metric="eval/loss"] td.winner')
    rows = page.locator("#summary-table tr[data-metric]").evaluate_all("rs => rs.map(r => r.dataset.metric)")
    first_train = next(i for i, m in enumerate(rows) if not m.startswith("eval/"))
    assert all(m.startswith("eval/") for m in rows[:first_train]) and first_train >= 3
    assert page.locator('#summary-table tr[data-metric="loss"] td.winner').count() == 1
    # "best" of a train metric is its smoothed curve's, never a single lucky batch.
    raw = live_server.api("GET", f"/api/runs/{base}/metrics", params={"names": "loss"}).json()["series"]["loss"]["value"]
    shown_best = float(page.inner_text('#summary-table tr[data-metric="loss"] td:nth-child(2) .best').split()[-1])
    assert shown_best > min(raw) + 0.01, (shown_best, min(raw))

    # Layout: the diff (only what differs), the summary, then the picker and the charts.
    page.wait_for_selector("#card-loss:not([hidden])")
    y = {sel: page.locator(sel).bounding_box()["y"] for sel in ("#summary-table", "#diff-table", "#metric-picker", "#card-loss")}
    assert y["#diff-table"] < y["#summary-table"] < y["#metric-picker"] < y["#card-loss"], y
    assert y["#summary-table"] < 900, "the diff and the start of the summary are on the first screen"
    shot("layout-compare-comparable")

    # The picker hides and shows charts, and remembers.
    page.uncheck('#metric-picker input[data-metric="loss"]')
    assert page.locator("#card-loss").is_hidden()
    page.reload()
    page.wait_for_selector("#card-accuracy:not([hidden])")
    assert page.locator("#card-loss").is_hidden() and not page.is_checked('#metric-picker input[data-metric="loss"]')
    page.check('#metric-picker input[data-metric="loss"]')
    page.wait_for_selector("#card-loss:not([hidden])")

    # A different max_length: nothing is like with like, so no leader at all, and the row says why.
    page.goto(f"{live_server.url}/compare?runs={base},{higher_lr},{longer}")
    page.wait_for_selector('#summary-table tr[data-metric="eval/loss"]')
    assert page.locator("#summary-table td.winner").count() == 0
    assert "max_length differ" in page.inner_text('#summary-table tr[data-metric="eval/loss"] th')
    shot("layout-compare-not-comparable")

    # A different λ: the total loss (NLL + λ·OR) is not comparable, its parts and accuracy are.
    page.goto(f"{live_server.url}/compare?runs={base},{strong}")
    page.wait_for_selector('#summary-table tr[data-metric="eval/nll_loss"] td.winner')
    for metric in ("loss", "eval/loss"):
        assert page.get_attribute(f'#summary-table tr[data-metric="{metric}"]', "data-comparable") == "false"
        assert page.locator(f'#summary-table tr[data-metric="{metric}"] td.winner').count() == 0
    assert page.locator('#summary-table tr[data-metric="eval/accuracy"] td.winner').count() >= 1


def test_no_page_scrolls_sideways_at_390px_and_start_is_on_screen(live_server, page, shot, tiny_dataset_file, tmp_path) -> None:  # type: ignore[no-untyped-def]
    first = _one_run(live_server, tiny_dataset_file, tmp_path, name="smollm2 · a rather long run name for a phone")
    second = _one_run(live_server, tiny_dataset_file, tmp_path, name="second", tags=["lambda-sweep"])
    page.set_viewport_size(MOBILE)
    pages = {"runs-list": "/", "new-run": "/runs/new", "run-detail": f"/runs/{first}",
             "compare": f"/compare?runs={first},{second}", "import": "/import", "not-found": "/runs/999999"}
    for name, path in pages.items():
        page.goto(live_server.url + path)
        page.wait_for_load_state("networkidle")
        if name == "run-detail":
            page.wait_for_selector("#samples .sample")
        if name == "compare":
            page.wait_for_selector("#card-loss:not([hidden])")
        width, inner = _no_sideways_scroll(page)
        assert width <= inner, f"{path} is {width} px wide at {inner} px"
        shot(f"layout-390-{name}")

    # New run: Start is on the first screen, and still after scrolling to the middle of the form.
    page.goto(live_server.url + "/runs/new")
    for scroll in (0, 1500):
        page.evaluate(f"window.scrollTo(0, {scroll})")
        box = page.locator("#submit-btn").bounding_box()
        assert box is not None and 0 <= box["y"] and box["y"] + box["height"] <= MOBILE["height"], (scroll, box)
        assert page.evaluate("() => { const b = document.getElementById('submit-btn').getBoundingClientRect();"
                             " return document.elementFromPoint(b.x + b.width / 2, b.y + b.height / 2)?.closest('#submit-btn') !== null; }")
    page.screenshot(path=str(shot("layout-390-new-run").with_name("pages-layout-390-new-run-screen.png")))

    # The runs list is cards: each run's values are on screen, not in a 1,200 px table.
    page.goto(live_server.url + "/")
    page.wait_for_selector(f'tr[data-run-id="{first}"]')
    for label in ("λ", "LR", "Loss"):
        cell = page.locator(f'tr[data-run-id="{first}"] td[data-label="{label}"]').bounding_box()
        assert cell is not None and cell["x"] + cell["width"] <= MOBILE["width"]
    export = page.locator("#export-json-btn").bounding_box()
    assert export is not None and export["x"] + export["width"] <= MOBILE["width"]
    nav = page.locator(".topbar-inner").bounding_box()
    assert nav is not None and nav["height"] <= 56, "the nav stays one line"


def test_login_and_account_at_390px(auth_server, page, shot) -> None:  # type: ignore[no-untyped-def]
    page.set_viewport_size(MOBILE)
    page.goto(auth_server.url + "/login")
    width, inner = _no_sideways_scroll(page)
    assert width <= inner
    shot("layout-390-login")
    page.fill("#login-name", "alice")
    page.fill("#login-password", PASSWORD)
    page.click("#login-submit")
    page.wait_for_url(auth_server.url + "/")
    for path in ("/", "/settings"):
        page.goto(auth_server.url + path)
        page.wait_for_load_state("networkidle")
        width, inner = _no_sideways_scroll(page)
        assert width <= inner, f"{path} is {width} px wide at {inner} px"
        nav = page.locator(".topbar-inner").bounding_box()
        assert nav is not None and nav["height"] <= 56, f"the nav wraps on {path}"
        # ...and no item wraps inside itself ("Log" over "out"): each is one line of text.
        heights = page.locator(".topbar-inner .nav-link, .topbar-inner .brand, #logout-btn").evaluate_all(
            "els => els.map(e => e.getBoundingClientRect().height)")
        assert max(heights) <= 40, heights  # one line of a nav link is 36 px with its padding; two are 58
    shot("layout-390-account")
