"""The Ray launcher end to end: a real local Ray head, a real dashboard with `--launcher ray`, tiny runs
submitted as Ray jobs that stream back over the websocket protocol, stopped, and killed."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orpo_dash.protocol import WORKER_TOKEN_ENV
from tests.conftest import REPO_ROOT, LiveServer, _serve, free_port
from tests.test_end_to_end import _worker_pids

pytestmark = pytest.mark.slow
# The `ray` extra is optional: without it this module is skipped, saying so.
job_submission = pytest.importorskip("ray.job_submission", reason="ray is not installed: pip install 'orpo-dash[ray]'")

# Not 6379: a Redis holds that port on the shared test machine.
RAY_GCS_PORT = 6390
STEPS = 4


@pytest.fixture(scope="module")
def ray_head() -> Iterator[str]:
    """A one-node Ray cluster (2 CPUs) for this module; yields its Jobs API URL."""
    ray = str(Path(sys.executable).parent / "ray")
    dashboard_port = free_port()
    # Jobs inherit the head's environment: this checkout's code and this venv's `python`.
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    temp_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's socket paths have a length limit
    started = subprocess.run(
        [ray, "start", "--head", "--num-cpus", "2", "--port", str(RAY_GCS_PORT), "--dashboard-host", "127.0.0.1",
         "--dashboard-port", str(dashboard_port), "--include-dashboard=true", "--disable-usage-stats",
         "--temp-dir", temp_dir],
        env=env, cwd=temp_dir, capture_output=True, text=True, timeout=180, check=False,
    )
    if started.returncode != 0:
        shutil.rmtree(temp_dir, ignore_errors=True)
        pytest.fail(f"`ray start --head` failed (is another Ray head on port {RAY_GCS_PORT}?):\n{started.stderr[-3000:]}")
    try:
        yield f"http://127.0.0.1:{dashboard_port}"
    finally:
        subprocess.run([ray, "stop", "--force"], env=env, capture_output=True, timeout=120, check=False)
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture
def ray_dashboard(tmp_path: Path, ray_head: str) -> Iterator[LiveServer]:
    yield from _serve(tmp_path, None, extra_env={
        "ORPO_DASH_LAUNCHER": "ray", "ORPO_DASH_RAY_ADDRESS": ray_head, "ORPO_DASH_RAY_POLL_SECONDS": "0.5",
    })


def _tiny_run(model_dir: Path, dataset: Path, **overrides) -> dict:  # type: ignore[no-untyped-def]
    return {"model": str(model_dir), "dataset": str(dataset), "max_steps": STEPS, "batch_size": 2, "max_length": 64,
            "max_prompt_length": 32, "learning_rate": 1e-3, "eval_fraction": 0.2, "seed": 0, **overrides}


def _job_of(ray_head: str, run_id: int, server: LiveServer) -> Any:
    """The Ray job this dashboard submitted for the run (found by its metadata)."""
    jobs = [job for job in job_submission.JobSubmissionClient(ray_head).list_jobs()
            if (job.metadata or {}).get("orpo_dash_run_id") == str(run_id)
            and (job.metadata or {}).get("orpo_dash_server") == server.url]
    assert len(jobs) == 1, jobs
    return jobs[0]


def test_a_run_trains_as_a_ray_job_and_streams_every_step(ray_head, ray_dashboard, tiny_model_dir, tiny_dataset_file) -> None:  # type: ignore[no-untyped-def]
    server = ray_dashboard
    launcher = server.api("GET", "/api/launcher").json()
    assert launcher["kind"] == "ray" and launcher["ray_address"] == ray_head
    assert launcher["nodes"] == 1 and launcher["cpus"] == 2 and launcher["error"] is None

    run_id = server.api("POST", "/api/runs", json=_tiny_run(tiny_model_dir, tiny_dataset_file)).json()["id"]
    run = server.wait_for_run(run_id, ("completed", "failed", "stopped"), timeout=150)
    assert run["status"] == "completed", run["error"]
    series = server.api("GET", f"/api/runs/{run_id}/metrics").json()["series"]
    assert series["loss"]["step"] == list(range(1, STEPS + 1))
    assert server.api("GET", f"/api/runs/{run_id}/logs").json(), "the worker's output should stream to the dashboard"

    job = _wait_for_job_end(ray_head, run_id, server)
    assert job.status == "SUCCEEDED"
    assert job.entrypoint.split()[1:3] == ["-m", "trainer"] and "--token" not in job.entrypoint
    # The token travels in the job's environment, never on its entrypoint (Ray lists and logs those).
    assert job.runtime_env["env_vars"][WORKER_TOKEN_ENV] not in job.entrypoint
    job_log = server.data_dir / "runs" / str(run_id) / "worker.log"
    deadline = time.monotonic() + 15
    while not job_log.exists():  # written once the launcher has seen the job end
        assert time.monotonic() < deadline, "the job's log should be kept in the run folder"
        time.sleep(0.2)
    assert f"Running entrypoint for job {job.submission_id}" in job_log.read_text()


def test_jobs_outlive_a_dashboard_restart_and_end_their_runs_stopped_or_failed_with_rays_message(ray_head, ray_dashboard, tiny_model_dir, tiny_dataset_file) -> None:  # type: ignore[no-untyped-def]
    server = ray_dashboard
    # Two long runs at once (the head has 2 CPUs, a job reserves 1): one to stop, one to kill.
    body = _tiny_run(tiny_model_dir, tiny_dataset_file, max_steps=5000)
    to_stop, to_kill = (server.api("POST", "/api/runs", json=body).json()["id"] for _ in range(2))
    for run_id in (to_stop, to_kill):
        _wait_for_steps(server, run_id, 1)
    server.stop()  # the jobs keep training on the cluster ...
    server.start()  # ... and the restarted dashboard adopts them
    for run_id in (to_stop, to_kill):
        _wait_for_steps(server, run_id, server.api("GET", f"/api/runs/{run_id}").json()["last_step"] + 1)

    assert server.api("POST", f"/api/runs/{to_stop}/stop").status_code == 200
    pids = _worker_pids(to_kill, server.url)
    assert pids, "the job's worker process should be running"
    for pid in pids:
        os.kill(pid, signal.SIGKILL)  # as the kernel's OOM killer would: the worker reports nothing

    stopped = server.wait_for_run(to_stop, ("completed", "failed", "stopped"), timeout=60)
    assert stopped["status"] == "stopped", stopped["error"]
    assert stopped["last_step"] < 5000
    # The job ends too: STOPPED by Ray's stop_job, or SUCCEEDED when the worker got the dashboard's stop over
    # its websocket and exited cleanly first.
    assert _wait_for_job_end(ray_head, to_stop, server).status in ("STOPPED", "SUCCEEDED")

    killed = server.wait_for_run(to_kill, ("completed", "failed", "stopped"), timeout=60)
    assert killed["status"] == "failed"
    # Only the launcher's reconciliation with Ray can say this: it must have adopted the job.
    job = _job_of(ray_head, to_kill, server)
    assert killed["error"].startswith(f"Ray job {job.submission_id} FAILED: ") and job.message in killed["error"], killed["error"]


def test_an_unreachable_ray_head_leaves_runs_queued_and_says_so(tmp_path, tiny_model_dir, tiny_dataset_file) -> None:  # type: ignore[no-untyped-def]
    nowhere = f"http://127.0.0.1:{free_port()}"
    for server in _serve(tmp_path, None, extra_env={"ORPO_DASH_LAUNCHER": "ray", "ORPO_DASH_RAY_ADDRESS": nowhere,
                                                    "ORPO_DASH_RAY_POLL_SECONDS": "0.5"}):
        launcher = server.api("GET", "/api/launcher").json()
        assert launcher["kind"] == "ray" and launcher["nodes"] is None
        assert nowhere in launcher["error"]
        run_id = server.api("POST", "/api/runs", json=_tiny_run(tiny_model_dir, tiny_dataset_file)).json()["id"]
        time.sleep(2)
        assert server.api("GET", f"/api/runs/{run_id}").json()["status"] == "queued"


def _wait_for_job_end(ray_head: str, run_id: int, server: LiveServer) -> Any:
    deadline = time.monotonic() + 60
    while not (job := _job_of(ray_head, run_id, server)).status.is_terminal():
        assert time.monotonic() < deadline, f"the Ray job stayed {job.status}"
        time.sleep(0.3)
    return job


def _wait_for_steps(server: LiveServer, run_id: int, steps: int) -> None:
    deadline = time.monotonic() + 120
    while (run := server.api("GET", f"/api/runs/{run_id}").json())["last_step"] is None or run["last_step"] < steps:
        assert run["status"] in ("queued", "running"), run
        assert time.monotonic() < deadline, "the run never started training"
        time.sleep(0.3)

