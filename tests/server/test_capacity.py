"""Issue 20: how many runs train at once by default, which GPU each local worker gets, and the flag."""

from __future__ import annotations

from pathlib import Path

from server.launchers import capacity
from server.settings import Settings
from tests.test_cli import run


def _driver_list(tmp_path: Path, gpus: int) -> Path:
    folder = tmp_path / "gpus"
    folder.mkdir()
    for i in range(gpus):
        (folder / f"0000:0{i}:00.0").mkdir()
    return folder


def test_visible_gpus_follow_the_driver_list_narrowed_by_cuda_visible_devices(tmp_path: Path) -> None:
    driver = _driver_list(tmp_path, 4)
    assert capacity.visible_gpus({}, driver) == ["0", "1", "2", "3"]
    assert capacity.visible_gpus({"CUDA_VISIBLE_DEVICES": "2,3"}, driver) == ["2", "3"]
    assert capacity.visible_gpus({"CUDA_VISIBLE_DEVICES": "1,-1,2"}, driver) == ["1"]  # CUDA stops at -1
    assert capacity.visible_gpus({"CUDA_VISIBLE_DEVICES": ""}, driver) == []
    assert capacity.visible_gpus({}, tmp_path / "no-driver") == []


def test_default_is_one_run_per_gpu_else_per_four_cores(monkeypatch, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cores = capacity.usable_cores()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert capacity.default_max_concurrent_runs() == max(1, cores // 4)
    assert Settings(data_dir=tmp_path).max_concurrent_runs == max(1, cores // 4)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2")
    assert Settings(data_dir=tmp_path).max_concurrent_runs == 3
    assert capacity.threads_per_cpu_run(2) == max(1, cores // 2)


def test_serve_takes_max_concurrent_and_names_the_flag_when_it_is_wrong(tmp_path: Path) -> None:
    result = run("serve", "--max-concurrent", "0", "--data-dir", str(tmp_path))
    assert result.returncode == 2
    assert "max_concurrent_runs must be at least 1 (got 0)" in result.stderr and "--max-concurrent or" in result.stderr
    assert "--max-concurrent N" in run("serve", "--help").stdout
