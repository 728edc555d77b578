"""Alerts reach an open run page live: a NaN loss streamed through the real worker protocol opens a
`non_finite` alert, and without a reload the page shows a banner with the advice, marks the onset on
the charts, and (tab hidden, notifications on) raises a desktop notification. The runs list badges it."""

from __future__ import annotations

import time

import pytest

from tests.over_penalized import BETA, STEPS, over_penalized_metrics
from tests.pages.conftest import point_count, register_run
from trainer.streaming import StreamingReporter

pytestmark = pytest.mark.browser

# A stand-in for the Notification API (headless Chromium has no notification centre) and a
# switchable document.hidden, so the test can put the tab "in the background".
FAKE_NOTIFICATIONS = """
window.__notes = [];
window.__hidden = false;
class FakeNotification {
  constructor(title, options) { window.__notes.push({ title, body: (options || {}).body }); }
  close() {}
  static requestPermission() { FakeNotification.permission = "granted"; return Promise.resolve("granted"); }
}
FakeNotification.permission = "default";
window.Notification = FakeNotification;
Object.defineProperty(document, "hidden", { configurable: true, get: () => window.__hidden });
"""


def _healthy(step: int) -> dict[str, float]:
    return {"loss": 2.0 - step * 0.01, "nll_loss": 1.9 - step * 0.01, "or_loss": 0.7, "log_odds_ratio": 0.1 * step,
            "accuracy": 0.6, "logps_chosen": -1.0, "logps_rejected": -1.5}


def test_non_finite_loss_shows_banner_marker_and_notification_live(live_server, page, shot, tiny_dataset_file) -> None:  # type: ignore[no-untyped-def]
    # float16: the advice is fitted to it (try bfloat16); a float32 run is pointed at its data instead.
    run_id, token = register_run(live_server, tiny_dataset_file, name="nan watch", dtype="float16")
    reporter = StreamingReporter(live_server.url, run_id, token)
    try:
        reporter.status("running", total_steps=40)
        for step in range(1, 11):
            reporter.metrics(step, _healthy(step))
        page.add_init_script(FAKE_NOTIFICATIONS)
        page.goto(f"{live_server.url}/runs/{run_id}")
        page.wait_for_function("() => Number(document.querySelector('[data-metric-group=loss]').dataset.pointCount) >= 30")
        page.wait_for_selector("#live-state[data-state=live]")
        assert page.locator("#alert-banner").is_hidden()
        page.evaluate("window.__sameDocument = true")  # gone if the page reloads

        page.click("#notify-btn")  # asks permission from a user gesture
        page.wait_for_selector("#notify-btn[aria-pressed=true]")
        page.evaluate("window.__hidden = true")

        reporter.metrics(11, {**_healthy(11), "loss": float("nan")})
        for step in range(12, 15):
            reporter.metrics(step, _healthy(step))

        banner = page.locator("#alert-banner [data-kind=non_finite]")
        banner.wait_for(state="visible")
        text = banner.inner_text()
        assert "non finite" in text.lower() and "step 11" in text
        # The banner points at the panel entry, which holds the advice (fitted: try bfloat16) and the fix.
        assert "What to try:" not in text and "Details and what to try" in text
        entry = page.locator("#alerts-list li[data-kind=non_finite]").inner_text()
        assert "What to try:" in entry and "dtype is float16" in entry and "bfloat16" in entry
        assert page.locator("#alerts-list li[data-kind=non_finite] [data-fix-alert]").inner_text() == "Clone with this fix"
        assert page.locator("#alert-banner").get_attribute("data-severity") == "critical"
        assert page.evaluate("window.__sameDocument") is True

        # Onset marker at step 11 on the affected charts (non_finite: every chart).
        for group in ("loss", "preference"):
            page.wait_for_function(
                f"""() => (document.querySelector('[data-metric-group={group}]').layout.shapes || [])
                     .some(s => s.x0 === 11 && s.name && s.name.startsWith('alert-'))"""
            )
        # The NaN travelled as null: a gap in the drawn loss line, not a number.
        loss_y = page.evaluate(
            """() => { const t = document.querySelector('[data-metric-group=loss]').data
                 .find(t => t.meta.key === 'loss' && t.meta.role === 'raw');
                 return t.x.map((x, i) => [x, t.y[i]]).filter(([x]) => x === 11).map(([, y]) => y); }"""
        )
        assert loss_y == [None]
        assert point_count(page, "loss") >= 3 * 13

        page.wait_for_function("() => window.__notes.length === 1")
        note = page.evaluate("window.__notes[0]")
        assert "nan watch" in note["title"] and "non finite" in note["title"] and "critical" in note["title"]
        assert "bfloat16" in note["body"]

        # The same alert in the panel, and dismissing hides it from the banner only.
        assert page.locator("#alerts-list li[data-kind=non_finite]").count() == 1
        page.evaluate("window.__hidden = false")
        shot("run-alert")
        page.click("#alert-banner [data-dismiss]")
        assert page.locator("#alert-banner").is_hidden()
        assert page.locator("#alerts-list li[data-kind=non_finite]").count() == 1

        # The runs list badges the run's open critical alert.
        page.goto(live_server.url + "/")
        badge = page.locator(f'tr[data-run-id="{run_id}"] [data-alert-severity=critical]')
        badge.wait_for()
        assert "1 critical" in badge.inner_text().lower()
        assert "non finite" in badge.get_attribute("title")
    finally:
        reporter.status("completed")
        reporter.close(timeout=30)


def _wait_for_alert(live_server, run_id: int, kind: str, timeout: float = 60) -> dict:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [a for a in live_server.api("GET", f"/api/runs/{run_id}").json()["alerts"] if a["kind"] == kind]
        if found:
            return found[-1]
        time.sleep(0.2)
    raise AssertionError(f"no {kind} alert on run {run_id} within {timeout} s")


def test_alert_reads_as_a_sentence_first_with_its_statistics_apart_and_is_shown_once(
    live_server, page, shot, tiny_dataset_file
) -> None:  # type: ignore[no-untyped-def]
    """Issue 20 point 9: the banner is one line per open alert (what is wrong, and a link); the alerts
    panel holds the whole alert once: the plain sentence first, then the statistics on a secondary
    line, then the advice and the fix."""
    run_id, token = register_run(live_server, tiny_dataset_file, name="beta ten", beta=BETA, max_steps=STEPS)
    reporter = StreamingReporter(live_server.url, run_id, token)
    try:
        reporter.status("running", total_steps=STEPS)
        for step in range(1, STEPS + 1):
            reporter.metrics(step, over_penalized_metrics(step))
        alert = _wait_for_alert(live_server, run_id, "over_penalization")
        assert alert["details"] and alert["message"].startswith("the chosen responses' log-prob has")
        for jargon in ("Theil-Sen", "Mann-Kendall", "window medians", "z="):
            assert jargon not in alert["message"], alert["message"]
        page.set_viewport_size({"width": 1400, "height": 900})
        page.goto(f"{live_server.url}/runs/{run_id}")
        item = page.locator("#alert-banner [data-kind=over_penalization]")
        item.wait_for(state="visible")

        # The panel entry: sentence, then statistics, then advice, in that order, each once.
        entry = page.locator(f"#alert-{alert['id']}")
        paragraphs = entry.locator("p").all_inner_texts()
        sentence = alert["message"][0].upper() + alert["message"][1:] + "."
        assert paragraphs[0] == sentence
        assert paragraphs[1] == f"Statistics: {alert['details']}"
        assert paragraphs[2].startswith("What to try: ") and alert["advice"] in paragraphs[2]
        assert entry.locator(".alert-details").evaluate("e => parseFloat(getComputedStyle(e).fontSize)") < \
            entry.locator(".alert-message").evaluate("e => parseFloat(getComputedStyle(e).fontSize)")

        # The banner: one line, the sentence and a link to the entry; no statistics, advice or fix.
        line = item.locator(".banner-text").inner_text()
        assert line.startswith("Critical: over penalization") or line.startswith("Warning: over penalization")
        assert alert["details"] not in line and "Statistics" not in line and "What to try" not in line
        assert item.locator("[data-fix-alert]").count() == 0
        height = item.locator(".banner-text").evaluate("e => e.getBoundingClientRect().height")
        line_height = item.locator(".banner-text").evaluate("e => parseFloat(getComputedStyle(e).lineHeight) || 22")
        assert height < 1.8 * line_height, (height, line_height)

        # Shown once in full: the statistics and the advice appear exactly once on the page.
        body = page.inner_text("body")
        assert body.count(alert["details"]) == 1 and body.count(alert["advice"]) == 1

        shot("alert-sentence-banner-panel")
        item.locator("[data-goto-alert]").click()
        page.wait_for_function(f"() => document.activeElement && document.activeElement.id === 'alert-{alert['id']}'")
        assert entry.evaluate("e => e.getBoundingClientRect().top >= 0 && e.getBoundingClientRect().bottom <= innerHeight")
        shot("alert-panel-entry")
    finally:
        reporter.status("completed")
        reporter.close(timeout=30)
