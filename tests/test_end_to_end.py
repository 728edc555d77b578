"""Issue 2's loop end to end: API -> launcher -> worker trains a tiny model -> websocket -> database."""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from orpo_dash.metric_names import TRAIN_METRICS

STEPS = 6


def _tiny_run(model_dir: Path, dataset: Path, **overrides) -> dict:  # type: ignore[no-untyped-def]
    return {
        "name": "e2e", "model": str(model_dir), "dataset": str(dataset), "max_steps": STEPS, "batch_size": 2,
        "max_length": 64, "max_prompt_length": 32, "learning_rate": 1e-3, "eval_fraction": 0.2, "seed": 0, **overrides,
    }


def _assert_every_step_arrived(server, run_id: int) -> None:  # type: ignore[no-untyped-def]
    series = server.api("GET", f"/api/runs/{run_id}/metrics", params={"max_points": 20000}).json()["series"]
    for name in TRAIN_METRICS:
        assert series[name]["step"] == list(range(1, STEPS + 1)), name
    assert all(v is not None for v in series["loss"]["value"])
    assert any(name.startswith("eval/") for name in series), "the end-of-run evaluation should be stored too"


@pytest.mark.slow
def test_run_created_through_the_api_trains_and_streams_every_step(live_server, tiny_model_dir, tiny_dataset_file) -> None:  # type: ignore[no-untyped-def]
    body = _tiny_run(tiny_model_dir, tiny_dataset_file, sample_every=3, eval_every=3, sample_max_new_tokens=4)
    created = live_server.api("POST", "/api/runs", json=body)
    assert created.status_code == 201, created.text
    run_id = created.json()["id"]
    assert "worker_token" not in created.json()  # tokens go to the worker, never to the browser

    run = live_server.wait_for_run(run_id, ("completed", "failed"), timeout=180)
    assert run["status"] == "completed", run["error"]
    assert run["total_steps"] == STEPS and run["last_step"] == STEPS
    assert run["latest"]["loss"] is not None
    _assert_every_step_arrived(live_server, run_id)

    # Straight from the SQLite file the server wrote: one row per (step, metric), nothing twice.
    db = sqlite3.connect(live_server.database_url.removeprefix("sqlite:///"))
    rows = db.execute("SELECT name, COUNT(*), COUNT(DISTINCT step), MIN(step), MAX(step) FROM metric_points "
                      "WHERE run_id = ? AND name = 'loss'", (run_id,)).fetchone()
    assert rows == ("loss", STEPS, STEPS, 1, STEPS)
    logs = live_server.api("GET", f"/api/runs/{run_id}/logs").json()
    assert logs, "the worker's log tail should reach the dashboard"
    samples = live_server.api("GET", f"/api/runs/{run_id}/samples").json()
    assert {sample["step"] for sample in samples} == {3, 6}
    assert all(sample["prompt"] for sample in samples)
    eval_loss = live_server.api("GET", f"/api/runs/{run_id}/metrics", params={"names": "eval/loss"}).json()
    assert eval_loss["series"]["eval/loss"]["step"][:2] == [3, 6]
    # Names may be repeated as well as comma-separated.
    both = live_server.api("GET", f"/api/runs/{run_id}/metrics", params=[("names", "loss"), ("names", "eval/loss,nll_loss")])
    assert sorted(both.json()["series"]) == ["eval/loss", "loss", "nll_loss"]
    assert [r["id"] for r in live_server.api("GET", "/api/runs", params={"status": "completed"}).json()] == [run_id]
    bogus = live_server.api("GET", "/api/runs", params={"status": "done"})
    assert bogus.status_code == 422 and "status must be one of 'queued', 'running'" in bogus.json()["detail"][0]["msg"]


@pytest.mark.slow
@pytest.mark.postgres
def test_same_loop_on_postgres(live_server_postgres, tiny_model_dir, tiny_dataset_file) -> None:  # type: ignore[no-untyped-def]
    server = live_server_postgres
    run_id = server.api("POST", "/api/runs", json=_tiny_run(tiny_model_dir, tiny_dataset_file)).json()["id"]
    run = server.wait_for_run(run_id, ("completed", "failed"), timeout=180)
    assert run["status"] == "completed", run["error"]
    _assert_every_step_arrived(server, run_id)


@pytest.mark.slow
def test_worker_that_cannot_load_the_model_leaves_the_run_failed_with_the_error(live_server, tiny_dataset_file, tmp_path) -> None:  # type: ignore[no-untyped-def]
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "llama", "hidden_size": "not a number"}')
    run_id = live_server.api("POST", "/api/runs", json=_tiny_run(broken, tiny_dataset_file)).json()["id"]
    run = live_server.wait_for_run(run_id, ("completed", "failed"), timeout=120)
    assert run["status"] == "failed"
    assert run["error"] and "broken-model" in run["error"] or "hidden_size" in (run["error"] or "")
    page = live_server.api("GET", f"/runs/{run_id}")
    assert page.status_code == 200


@pytest.mark.slow
def test_dashboard_shutdown_stops_its_runs_instead_of_calling_them_completed(live_server, tiny_model_dir, tiny_dataset_file) -> None:  # type: ignore[no-untyped-def]
    run_id = _start_long_run(live_server, tiny_model_dir, tiny_dataset_file)
    live_server.stop()  # SIGTERM: a normal shutdown
    live_server.start()
    run = live_server.api("GET", f"/api/runs/{run_id}").json()
    assert run["status"] == "stopped"
    assert run["last_step"] < 5000
    # The worker's last step and lines came after the dashboard's sockets closed: it spilled them,
    # and the dashboard delivered the file itself once the worker exited.
    assert list(live_server.data_dir.rglob("orpo-dash-spill-*")) == []
    logs = [line["text"] for line in live_server.api("GET", f"/api/runs/{run_id}/logs").json()]
    assert f"stop requested: stopping after step {run['last_step']}" in logs, logs
    assert any(line.startswith("saved checkpoint") for line in logs), logs


@pytest.mark.slow
def test_a_worker_killed_mid_run_leaves_the_run_failed_with_the_signal_named(live_server, tiny_model_dir, tiny_dataset_file) -> None:  # type: ignore[no-untyped-def]
    run_id = _start_long_run(live_server, tiny_model_dir, tiny_dataset_file)
    pids = _worker_pids(run_id, live_server.url)
    assert len(pids) == 1, pids
    # The run's token reaches the worker through its environment: never on a command line `ps` shows.
    assert "--token" not in Path(f"/proc/{pids[0]}/cmdline").read_bytes().decode().split("\0")
    os.kill(pids[0], signal.SIGKILL)  # what the kernel's OOM killer does
    run = live_server.wait_for_run(run_id, ("completed", "failed", "stopped"), timeout=60)
    assert run["status"] == "failed"
    assert run["error"].startswith("worker was killed by SIGKILL") and "batch_size" in run["error"]


@pytest.mark.slow
def test_deleting_a_running_run_stops_its_worker_and_leaves_nothing_behind_but_checkpoints(live_server, tiny_model_dir, tiny_dataset_file) -> None:  # type: ignore[no-untyped-def]
    run_id = _start_long_run(live_server, tiny_model_dir, tiny_dataset_file)
    assert live_server.api("DELETE", f"/api/runs/{run_id}").status_code == 204
    deadline = time.monotonic() + 60
    while _worker_pids(run_id, live_server.url):
        assert time.monotonic() < deadline, "the deleted run's worker kept training"
        time.sleep(0.2)
    assert live_server.api("GET", f"/api/runs/{run_id}").status_code == 404
    # The worker's last batches had nowhere to go: its spill file is dropped with the run, quietly, once
    # the launcher's watcher has reaped the worker (the exited process leaves /proc's list before that).
    while list(live_server.data_dir.rglob("orpo-dash-spill-*")):
        assert time.monotonic() < deadline, "the deleted run's spill file was left behind"
        time.sleep(0.2)
    assert "Traceback" not in live_server.log_path.read_text()


def _start_long_run(server, model_dir: Path, dataset: Path) -> int:  # type: ignore[no-untyped-def]
    """Launch a run far longer than any test and return its id once it has trained two steps."""
    run_id = server.api("POST", "/api/runs", json=_tiny_run(model_dir, dataset, max_steps=5000)).json()["id"]
    deadline = time.monotonic() + 120
    while (server.api("GET", f"/api/runs/{run_id}").json()["last_step"] or 0) < 2:
        assert time.monotonic() < deadline, "the run never started"
        time.sleep(0.2)
    return int(run_id)


def _worker_pids(run_id: int, server_url: str | None = None) -> list[int]:
    """Processes running `python -m trainer ... --run-id RUN_ID` (read from /proc: no pgrep needed),
    only those of the dashboard at `server_url` when given: run ids restart at 1 in every test's
    database, and a worker another test left behind must not be taken for this one."""
    port = urlsplit(server_url).port if server_url else None
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue  # the process ended while we looked
        if argv[1:3] != ["-m", "trainer"] or "--run-id" not in argv or argv[argv.index("--run-id") + 1] != str(run_id):
            continue
        if port is not None and ("--server" not in argv or urlsplit(argv[argv.index("--server") + 1]).port != port):
            continue
        pids.append(int(cmdline.parent.name))
    return pids
