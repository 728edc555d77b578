"""Choosing a launcher, and what every launcher's worker is started with (no Ray cluster needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from server.launchers.cluster_info import describe_launcher
from server.launchers.ray_jobs import job_runtime_env
from server.launchers.worker_command import worker_command
from server.settings import Settings


def test_local_is_the_default_and_ray_needs_an_address(tmp_path: Path) -> None:
    assert Settings(data_dir=tmp_path).launcher == "local"
    with pytest.raises(ValidationError, match="launcher='ray' needs ray_address"):
        Settings(data_dir=tmp_path, launcher="ray")
    with pytest.raises(ValidationError, match="launcher"):
        Settings(data_dir=tmp_path, launcher="slurm")
    settings = Settings(data_dir=tmp_path, launcher="ray", ray_address="http://head:8265",
                        ray_runtime_env={"pip": ["orpo-dash"]})
    assert settings.ray_runtime_env == {"pip": ["orpo-dash"]}


def test_ray_runtime_env_is_read_as_json_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORPO_DASH_RAY_RUNTIME_ENV", '{"working_dir": "/src/orpo-dash", "env_vars": {"HF_HOME": "/cache"}}')
    settings = Settings(data_dir=tmp_path)
    assert settings.ray_runtime_env["env_vars"] == {"HF_HOME": "/cache"}


def test_one_gpu_runs_the_trainer_and_several_run_it_under_torchrun() -> None:
    single = worker_command(python="python", server_url="http://dash:8000", run_id=7, gpus=1)
    assert single == ["python", "-m", "trainer", "--server", "http://dash:8000", "--run-id", "7"]
    several = worker_command(python="python", server_url="http://dash:8000", run_id=7, gpus=4,
                             config_path=Path("/runs/7/config.json"), cache_dir=Path("/cache"))
    assert several[:6] == ["python", "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=4", "-m"]
    assert several[6:] == ["trainer", "/runs/7/config.json", "--server", "http://dash:8000", "--run-id", "7",
                           "--cache-dir", "/cache"]


def test_the_runs_variables_join_the_configured_runtime_env_and_win_a_clash() -> None:
    base: dict[str, Any] = {"pip": ["orpo-dash"], "env_vars": {"HF_HOME": "/cache", "ORPO_DASH_WORKER_TOKEN": "stale"}}
    merged = job_runtime_env(base, {"ORPO_DASH_WORKER_TOKEN": "fresh"})
    assert merged == {"pip": ["orpo-dash"], "env_vars": {"HF_HOME": "/cache", "ORPO_DASH_WORKER_TOKEN": "fresh"}}
    assert base["env_vars"]["ORPO_DASH_WORKER_TOKEN"] == "stale", "the setting itself is never changed"


def test_the_form_is_told_which_launcher_is_active(tmp_path: Path) -> None:
    local = describe_launcher(Settings(data_dir=tmp_path, max_concurrent_runs=2))
    assert (local.kind, local.max_concurrent_runs, local.ray_address) == ("local", 2, None)
    assert describe_launcher(Settings(data_dir=tmp_path, launch_workers=False)).kind == "none"
