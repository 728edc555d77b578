"""A sweep on the Ray launcher: a real local Ray head (2 CPUs, room for two jobs at once), a sweep that
allows one run at a time, both runs trained as Ray jobs one after the other."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from tests.conftest import LiveServer
from tests.server.test_ray_launcher import _tiny_run, ray_dashboard, ray_head  # noqa: F401 - fixtures

pytestmark = pytest.mark.slow


def test_the_ray_launcher_runs_a_sweep_one_job_at_a_time(
    ray_dashboard: LiveServer, tiny_model_dir: Path, tiny_dataset_file: Path,  # noqa: F811
) -> None:
    server = ray_dashboard
    created = server.api("POST", "/api/sweeps", json={
        "name": "ray sweep", "config": _tiny_run(tiny_model_dir, tiny_dataset_file, max_steps=3),
        "axes": {"beta": "0.1, 0.2"}, "max_concurrent": 1})
    assert created.status_code == 201, created.text
    first, second = created.json()["run_ids"]
    # While the first trains, the second waits although the cluster has room for it.
    running = server.wait_for_run(first, ("running", "completed", "failed"), timeout=150)
    assert running["status"] == "running", running["error"]
    assert server.api("GET", f"/api/runs/{second}").json()["status"] == "queued"
    done = [server.wait_for_run(run_id, ("completed", "failed", "stopped"), timeout=200) for run_id in (first, second)]
    assert [run["status"] for run in done] == ["completed", "completed"], [run["error"] for run in done]
    assert datetime.fromisoformat(done[1]["started_at"]) >= datetime.fromisoformat(done[0]["finished_at"])
