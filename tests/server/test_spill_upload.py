"""A real training run whose dashboard is down finishes anyway, and its spill file later delivers the whole run."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO_ROOT, free_port

pytestmark = pytest.mark.slow
STEPS = 4


def _orpo_dash(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "orpo_dash.cli", *args], capture_output=True, text=True, timeout=300,
                          cwd=cwd, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})


def test_run_with_dashboard_down_is_delivered_complete_by_upload(
    tmp_path, tiny_model_dir, tiny_dataset_file, live_server  # type: ignore[no-untyped-def]
) -> None:
    live_server.stop()  # the dashboard is not running while the worker trains
    output_dir = tmp_path / "out"
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({
        "model": str(tiny_model_dir), "dataset": str(tiny_dataset_file), "max_steps": STEPS, "batch_size": 2,
        "max_length": 64, "max_prompt_length": 32, "eval_fraction": 0.25, "eval_every": 2, "seed": 0,
        "learning_rate": 1e-3, "output_dir": str(output_dir),
    }))
    metrics_file = tmp_path / "metrics.jsonl"
    nobody = f"http://127.0.0.1:{free_port()}"

    trained = _orpo_dash("train", str(config), "--server", nobody, "--metrics-out", str(metrics_file),
                         "--name", "offline-run", cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    [spill] = output_dir.glob("orpo-dash-spill-run*-*.jsonl")
    assert f"orpo-dash upload {spill}" in trained.stderr  # the worker says how to deliver it

    live_server.start()  # same database, now up
    uploaded = _orpo_dash("upload", str(spill), "--server", live_server.url, cwd=tmp_path)
    assert uploaded.returncode == 0, uploaded.stderr
    run_id = int(re.search(r"to run (\d+)", uploaded.stdout).group(1))  # type: ignore[union-attr]
    assert not spill.exists()

    run = live_server.api("GET", f"/api/runs/{run_id}").json()
    assert (run["name"], run["status"], run["error"]) == ("offline-run", "completed", None)
    assert run["total_steps"] == STEPS and run["last_step"] == STEPS
    assert run["config"]["model"] == str(tiny_model_dir)

    # Every value the worker wrote to its own metrics file is on the dashboard, at its step.
    expected: dict[str, dict[int, float | None]] = {}
    for line in metrics_file.read_text().splitlines():
        row = json.loads(line)
        step = row.pop("step")
        for name, value in row.items():
            expected.setdefault(name, {})[step] = value
    assert {"loss", "or_loss", "log_odds_ratio", "eval/loss"} <= set(expected)
    assert sorted(expected["loss"]) == list(range(1, STEPS + 1))
    series = live_server.api("GET", f"/api/runs/{run_id}/metrics", params={"max_points": 1000}).json()["series"]
    assert set(series) == set(expected)
    for name, by_step in expected.items():
        assert series[name]["step"] == sorted(by_step), name
        assert series[name]["value"] == pytest.approx([by_step[step] for step in sorted(by_step)]), name

    # The run log came along too, in order: each line the worker logged (its console shows them with a
    # time prefix, among the step, status and phase lines).
    logs = live_server.api("GET", f"/api/runs/{run_id}/logs", params={"tail": 5000}).json()
    console = [line for line in trained.stderr.splitlines() if line.startswith("[")]
    logged = [line.split("] ", 1)[1] for line in console if not re.match(r"\[[\d:]+\] (step \d+|status|phase):", line)]
    assert any(text.startswith("loading model") for text in logged)
    assert [line["text"] for line in logs if line["stream"] == "log"] == logged


def test_a_spill_file_names_its_run_and_sits_where_the_worker_puts_it(tmp_path: Path) -> None:
    from orpo_dash.protocol import ProtocolError
    from server.services.spill_delivery import (
        read_run_spill_file,
        spill_file_of,
        spill_files_left_by,
    )

    config = {"output_dir": str(tmp_path)}
    path = spill_file_of(config=config, run_id=7, pid=4242, cwd=Path("/elsewhere"))
    assert path == tmp_path / "orpo-dash-spill-run7-4242.jsonl"
    batch = {"points": [[3, "loss", 1.5, 0.0]], "status": {"status": "stopped"}}
    path.write_text(json.dumps({"type": "spill", "run_id": 7, "token": "odw_x"}) + "\n" + json.dumps(batch) + "\n")
    (tmp_path / "orpo-dash-spill-run7-4242.uploading.jsonl").write_text("")  # an upload in progress: not ours
    (tmp_path / "orpo-dash-spill-run70-1.jsonl").write_text("")
    assert spill_files_left_by(config=config, run_id=7, cwd=Path("/elsewhere")) == [path]
    assert read_run_spill_file(path, run_id=7) == ("odw_x", [batch])
    with pytest.raises(ProtocolError, match="written for run 7, not run 8"):
        read_run_spill_file(path, run_id=8)
    not_spill = tmp_path / "orpo-dash-spill-run7-1.jsonl"
    not_spill.write_text(json.dumps(batch) + "\n")
    with pytest.raises(ProtocolError, match="no spill header"):
        read_run_spill_file(not_spill, run_id=7)
