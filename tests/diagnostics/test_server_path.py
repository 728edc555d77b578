"""The live server's incremental alerts equal `orpo-dash diagnose` on the same series.

One labelled trace is streamed through the real worker path (StreamingReporter -> websocket ->
single DB writer -> AlertEngine.feed per committed batch, flush() on the terminal status) into a
real `orpo-dash serve`; the alerts it stored must be what diagnose() computes on the same file.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from orpo_dash.diagnostics import diagnose, load_metrics_file
from trainer.streaming import StreamingReporter

TRACES = Path(__file__).resolve().parents[2] / "benchmarks" / "alerts" / "traces"
# Three kinds open and one escalates from warning to critical; NaN values (sent as null) mid-run, then a
# close; an SFT'd slow start, where log_odds_flat waits on the chosen NLL's trend and opens at step 210.
TRACES_STREAMED = ("syn_over_penalization_3", "syn_non_finite_3", "real_sft_short_0")


def _stored_form(changes) -> list[tuple[str, str, int, int, str, int | None]]:
    """diagnose()'s state changes folded the way the server stores them: one row per alert,
    updated in place by an escalation and closed by its closing change."""
    rows: list[dict] = []
    live: dict[str, dict] = {}
    for c in changes:
        if c.state == "open" and c.kind in live:
            live[c.kind].update(severity=c.severity, step=c.step)
        elif c.state == "open":
            live[c.kind] = {"kind": c.kind, "severity": c.severity, "onset_step": c.onset_step, "step": c.step,
                            "state": "open", "closed_step": None}
            rows.append(live[c.kind])
        elif c.kind in live:
            live.pop(c.kind).update(state="closed", closed_step=c.step)
    return [(r["kind"], r["severity"], r["onset_step"], r["step"], r["state"], r["closed_step"]) for r in rows]


@pytest.mark.parametrize("trace", TRACES_STREAMED)
def test_streamed_run_gets_the_same_alerts_as_diagnose(live_server, tmp_path: Path, trace: str) -> None:
    series = load_metrics_file(TRACES / f"{trace}.jsonl.gz")
    expected = _stored_form(diagnose(series))
    assert expected, "the trace should open at least one alert, or the comparison proves nothing"

    dataset = tmp_path / "pairs.jsonl"
    dataset.write_text('{"prompt": "p", "chosen": "a", "rejected": "b"}\n')
    created = live_server.api("POST", "/api/runs", params={"launch": "false"}, json={"dataset": str(dataset)})
    assert created.status_code in (200, 201), created.text
    run_id, token = created.json()["id"], created.json()["worker_token"]

    by_step: dict[int, dict[str, float]] = {}
    for name, points in series.items():
        for step, value in points:
            by_step.setdefault(step, {})[name] = value
    reporter = StreamingReporter(live_server.url, run_id, token, spill_path=tmp_path / "spill.jsonl")
    reporter.status("running", total_steps=max(by_step))
    for step in sorted(by_step):
        reporter.metrics(step, by_step[step])
    reporter.status("completed")
    reporter.close()

    live_server.wait_for_run(run_id, ("completed",), timeout=30)
    deadline = time.monotonic() + 10
    while True:  # the terminal status and its flush() commit together; poll briefly all the same
        stored = live_server.api("GET", f"/api/runs/{run_id}/alerts").json()
        got = [(a["kind"], a["severity"], a["onset_step"], a["step"], a["state"], a["closed_step"]) for a in stored]
        if got == expected or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert got == expected

    # The dashboard's own exports, fed back to `orpo-dash diagnose`, give the same alerts again.
    for fmt in ("csv", "json"):
        export = tmp_path / f"export.{fmt}"
        export.write_bytes(live_server.api("GET", f"/api/runs/{run_id}/export", params={"format": fmt}).content)
        assert _stored_form(diagnose(load_metrics_file(export))) == expected, fmt


def test_bad_alert_thresholds_are_refused_at_launch_and_never_cost_a_stored_run_its_metrics(
        live_server, tmp_path: Path) -> None:
    dataset = tmp_path / "pairs.jsonl"
    dataset.write_text('{"prompt": "p", "chosen": "a", "rejected": "b"}\n')
    refused = live_server.api("POST", "/api/runs", params={"launch": "false"},
                              json={"dataset": str(dataset), "alert_thresholds": {"min_stp": 80}})
    assert refused.status_code == 422
    assert "did you mean 'min_step'?" in refused.text and "alert_thresholds" in refused.text

    # A run stored by an earlier version, which accepted any key: its metrics must still be kept.
    created = live_server.api("POST", "/api/runs", params={"launch": "false"}, json={"dataset": str(dataset)})
    run_id, token = created.json()["id"], created.json()["worker_token"]
    db = sqlite3.connect(live_server.database_url.removeprefix("sqlite:///"))
    with db:
        (config,) = db.execute("SELECT config FROM runs WHERE id = ?", (run_id,)).fetchone()
        db.execute("UPDATE runs SET config = ? WHERE id = ?",
                   (config.replace('"alert_thresholds": {}', '"alert_thresholds": {"min_stp": 80}'), run_id))
        assert "min_stp" in db.execute("SELECT config FROM runs WHERE id = ?", (run_id,)).fetchone()[0]
    db.close()

    reporter = StreamingReporter(live_server.url, run_id, token, spill_path=tmp_path / "spill.jsonl")
    reporter.status("running", total_steps=5)
    for step in range(1, 6):
        reporter.metrics(step, {"loss": 1.0 / step, "log_odds_ratio": 0.1 * step})
    reporter.status("completed")
    reporter.close()

    live_server.wait_for_run(run_id, ("completed",), timeout=30)
    loss = live_server.api("GET", f"/api/runs/{run_id}/metrics", params={"names": "loss"}).json()
    assert loss["series"]["loss"]["step"] == [1, 2, 3, 4, 5]
    logs = [line["text"] for line in live_server.api("GET", f"/api/runs/{run_id}/logs").json()]
    assert any("alert_thresholds ignored" in text and "min_stp" in text for text in logs)


def test_a_dashboard_killed_mid_run_restores_the_engine_and_gets_the_same_alerts(live_server, tmp_path: Path) -> None:
    series = load_metrics_file(TRACES / "syn_over_penalization_3.jsonl.gz")
    expected = _stored_form(diagnose(series))
    dataset = tmp_path / "pairs.jsonl"
    dataset.write_text('{"prompt": "p", "chosen": "a", "rejected": "b"}\n')
    created = live_server.api("POST", "/api/runs", params={"launch": "false"}, json={"dataset": str(dataset)}).json()
    by_step: dict[int, dict[str, float]] = {}
    for name, points in series.items():
        for step, value in points:
            by_step.setdefault(step, {})[name] = value
    steps = sorted(by_step)
    reporter = StreamingReporter(live_server.url, created["id"], created["worker_token"], spill_path=tmp_path / "spill.jsonl")
    reporter.status("running", total_steps=max(by_step))
    for step in steps[: len(steps) // 2]:
        reporter.metrics(step, by_step[step])
    deadline = time.monotonic() + 30  # the first half committed (and the engine saved with it) before the crash
    while live_server.api("GET", f"/api/runs/{created['id']}").json()["last_step"] != steps[len(steps) // 2 - 1]:
        assert time.monotonic() < deadline, "the first half was never committed"
        time.sleep(0.1)
    live_server.kill()  # SIGKILL: the in-memory engine is gone; only what was committed (and saved) is left
    live_server.start()
    for step in steps[len(steps) // 2:]:
        reporter.metrics(step, by_step[step])
    reporter.status("completed")
    reporter.close()

    live_server.wait_for_run(created["id"], ("completed",), timeout=60)
    stored = live_server.api("GET", f"/api/runs/{created['id']}/alerts").json()
    assert [(a["kind"], a["severity"], a["onset_step"], a["step"], a["state"], a["closed_step"]) for a in stored] == expected
