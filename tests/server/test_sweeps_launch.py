"""Sweeps launched for real: a dashboard process whose local launcher starts tiny-model workers (it may
run 3 at once, tests/conftest.py), a sweep that allows one at a time, stopping a sweep together, and
stop_on_critical ending a run whose critical alert opens mid-run."""

from __future__ import annotations

import statistics
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import LiveServer, assert_no_server_tracebacks

pytestmark = pytest.mark.slow

STEPS = 3
# format_not_learned, judged from step 1 over 8-point windows, goes critical as soon as the chosen NLL
# has not halved: with a learning rate of 1e-9 it never moves, so the alert opens around step 11.
CRITICAL_SOON = {
    "window": 8, "min_window": 8, "check_every": 1, "min_step": 1, "fnl_critical_after": 1,
    "fnl_critical_level": 0.5, "fnl_level": 0.5, "fnl_min_drop": 1.0, "fnl_nll_floor": 0.0, "trend_z": 100,
    "answers_nll": 0.0,
}


def _config(model: Path, dataset: Path, **overrides: Any) -> dict[str, Any]:
    return {"model": str(model), "dataset": str(dataset), "max_steps": STEPS, "batch_size": 2, "max_length": 64,
            "max_prompt_length": 32, "learning_rate": 1e-3, "eval_fraction": 0.2, "seed": 0,
            "system_metrics_seconds": 0, **overrides}


def _sweep(server: LiveServer, **body: Any) -> dict[str, Any]:
    created = server.api("POST", "/api/sweeps", json={"name": "s", **body})
    assert created.status_code == 201, created.text
    return created.json()


class _Watcher:
    """Polls the sweep's runs in the background and keeps the most seen running at once."""

    def __init__(self, server: LiveServer, sweep_id: int) -> None:
        self.most_running = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, args=(server, sweep_id), daemon=True)
        self._thread.start()

    def _poll(self, server: LiveServer, sweep_id: int) -> None:
        while not self._stop.is_set():
            runs = server.api("GET", "/api/runs", params={"sweep": sweep_id}).json()
            self.most_running = max(self.most_running, sum(run["status"] == "running" for run in runs))
            time.sleep(0.05)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(timeout=10)
        return self.most_running


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _wait_sweep(server: LiveServer, sweep_id: int, done: set[str], timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    sweep: dict[str, Any] = {}
    while time.monotonic() < deadline:
        sweep = server.api("GET", f"/api/sweeps/{sweep_id}").json()
        if set(sweep["status_counts"]) <= done:
            return sweep
        time.sleep(0.3)
    raise AssertionError(f"sweep {sweep_id} did not finish: {sweep.get('status_counts')}")


@pytest.mark.parametrize("server_fixture", ["live_server", pytest.param("live_server_postgres", marks=pytest.mark.postgres)])
def test_a_sweep_runs_one_at_a_time_to_completion_and_reports_its_results(
    request: pytest.FixtureRequest, server_fixture: str, tiny_model_dir: Path, tiny_dataset_file: Path,
) -> None:
    live_server: LiveServer = request.getfixturevalue(server_fixture)
    sweep = _sweep(live_server, config=_config(tiny_model_dir, tiny_dataset_file),
                   axes={"beta": "0.1, 0.5"}, seeds=2, max_concurrent=1)
    assert sweep["run_count"] == 4
    watcher = _Watcher(live_server, sweep["id"])
    try:
        result = _wait_sweep(live_server, sweep["id"], {"completed", "failed"}, timeout=400)
    finally:
        most_running = watcher.stop()
    assert result["status_counts"] == {"completed": 4}, result
    # The launcher may run 3 at once; the sweep allows 1. Polled, and from the runs' own times.
    assert most_running == 1
    runs = sorted((live_server.api("GET", f"/api/runs/{run_id}").json() for run_id in sweep["run_ids"]),
                  key=lambda run: run["started_at"])
    assert [run["id"] for run in runs] == sweep["run_ids"]  # in the order queued
    for before, after in zip(runs, runs[1:], strict=False):
        assert _time(after["started_at"]) >= _time(before["finished_at"]), (before, after)

    # The sweep's table agrees with each run's own metrics.
    by_id = {run["id"]: run for run in result["runs"]}
    for run in runs:
        series = live_server.api("GET", f"/api/runs/{run['id']}/metrics", params={"names": "eval/loss,eval/accuracy"}).json()["series"]
        row = by_id[run["id"]]
        assert row["final"]["eval/loss"] == pytest.approx(series["eval/loss"]["value"][-1])
        assert row["final"]["eval/loss"] == pytest.approx(run["latest"]["eval/loss"])
        assert row["best"]["eval/loss"] == pytest.approx(min(series["eval/loss"]["value"]))
        assert row["best"]["eval/accuracy"] == pytest.approx(max(series["eval/accuracy"]["value"]))
        assert row["values"] == {"beta": run["config"]["beta"]} and row["seed"] == run["config"]["seed"]
    for setting in result["settings"]:
        finals = [by_id[run_id]["final"]["eval/loss"] for run_id in setting["run_ids"]]
        assert setting["n"] == 2 and setting["mean"]["eval/loss"] == pytest.approx(statistics.fmean(finals))
        assert setting["std"]["eval/loss"] == pytest.approx(statistics.stdev(finals))
    # Now that runs of this model have completed, a preview can say how long the next sweep takes.
    preview = live_server.api("POST", "/api/sweeps/preview", json={
        "config": _config(tiny_model_dir, tiny_dataset_file), "axes": {"beta": "0.1, 0.2, 0.3"}}).json()
    per_step = statistics.median(
        (_time(run["finished_at"]) - _time(run["started_at"])).total_seconds() / run["last_step"] for run in runs)
    assert preview["estimated_seconds"] == pytest.approx(per_step * STEPS * 3, rel=1e-3), preview
    assert "median of 4 completed run(s)" in preview["estimate_basis"]
    assert_no_server_tracebacks(live_server)


def test_stopping_a_sweep_stops_its_running_run_and_cancels_the_queued_ones(
    live_server: LiveServer, tiny_model_dir: Path, tiny_dataset_file: Path,
) -> None:
    sweep = _sweep(live_server, config=_config(tiny_model_dir, tiny_dataset_file, max_steps=100_000, learning_rate=1e-5),
                   axes={"beta": "0.1, 0.2, 0.3"}, max_concurrent=1)
    first, *rest = sweep["run_ids"]
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        run = live_server.api("GET", f"/api/runs/{first}").json()
        if (run["last_step"] or 0) >= 1:
            break
        assert run["status"] in ("queued", "running"), run
        time.sleep(0.2)
    assert [live_server.api("GET", f"/api/runs/{run_id}").json()["status"] for run_id in rest] == ["queued", "queued"]
    stopped = live_server.api("POST", f"/api/sweeps/{sweep['id']}/stop")
    assert stopped.status_code == 200, stopped.text
    assert live_server.wait_for_run(first, ("stopped", "completed", "failed"), timeout=120)["status"] == "stopped"
    for run_id in rest:
        run = live_server.api("GET", f"/api/runs/{run_id}").json()
        assert run["status"] == "stopped" and run["started_at"] is None, run
    time.sleep(1.5)  # the ended worker frees the launcher's slot: nothing of the sweep may start in it
    assert live_server.api("GET", f"/api/sweeps/{sweep['id']}").json()["status_counts"] == {"stopped": 3}
    assert_no_server_tracebacks(live_server)


def test_stop_on_critical_stops_the_run_that_raised_it_and_says_why(
    live_server: LiveServer, tiny_model_dir: Path, tiny_dataset_file: Path,
) -> None:
    config = _config(tiny_model_dir, tiny_dataset_file, max_steps=100_000, learning_rate=1e-9,
                     alert_thresholds=CRITICAL_SOON)
    sweep = _sweep(live_server, config=config, axes={"beta": "0.1, 0.2"}, max_concurrent=1, stop_on_critical=True)
    first, second = sweep["run_ids"]
    run = live_server.wait_for_run(first, ("stopped", "completed", "failed"), timeout=240)
    assert run["status"] == "stopped", run
    critical = [alert for alert in run["alerts"] if alert["severity"] == "critical"]
    assert critical and run["last_step"] < 1000, run
    assert "stop_on_critical" in run["error"] and critical[0]["kind"] in run["error"], run["error"]
    logs = live_server.api("GET", f"/api/runs/{first}/logs", params={"tail": 5000}).json()
    assert any("stopped early by sweep" in line["text"] for line in logs)
    # The next run of the sweep starts once the first has stopped, and is stopped in its turn.
    assert live_server.wait_for_run(second, ("stopped", "completed", "failed"), timeout=240)["status"] == "stopped"
    counted = live_server.api("GET", f"/api/sweeps/{sweep['id']}").json()
    assert all(row["critical_alerts"] >= 1 for row in counted["runs"]), counted["runs"]
    assert_no_server_tracebacks(live_server)
