"""The `orpo-dash` console script as a user runs it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ORPO_DASH = shutil.which("orpo-dash") or str(Path(sys.executable).parent / "orpo-dash")


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ORPO_DASH, *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_help_documents_every_subcommand() -> None:
    result = run("--help")
    assert result.returncode == 0
    for command in ("serve", "train", "diagnose", "upload", "migrate", "prepare-model"):
        assert command in result.stdout
    serve = run("serve", "--help").stdout
    assert "--host" in serve and "--port" in serve and "--database-url" in serve
    train = run("train", "--help").stdout
    assert "--server" in train and "--metrics-out" in train and "--token" in train
    assert "--auth" in serve and "--allowed-hosts" in serve


def test_serve_refuses_a_public_bind_with_a_clear_message() -> None:
    result = run("serve", "--host", "0.0.0.0", "--port", "1")
    assert result.returncode == 2
    assert "no authentication" in result.stderr and "set by" not in result.stderr
    assert "--auth" in result.stderr and "orpo-dash user add" in result.stderr  # the fix


def test_user_add_creates_accounts_and_names_what_is_wrong(tmp_path: Path) -> None:
    where = ["--database-url", f"sqlite:///{tmp_path / 'dash.sqlite3'}", "--data-dir", str(tmp_path)]

    def add(name: str, *options: str, password: str = "long enough pw") -> subprocess.CompletedProcess[str]:
        return subprocess.run([ORPO_DASH, "user", "add", name, *options, "--password-stdin", *where],
                              input=password + "\n", capture_output=True, text=True, timeout=300, check=False)

    created = add("alice", "--admin")
    assert created.returncode == 0 and "alice (admin) created" in created.stdout, created.stderr
    assert add("bob", "--role", "viewer").returncode == 0
    again = add("alice")
    assert again.returncode == 2 and "already exists" in again.stderr
    short = add("carol", password="short")
    assert short.returncode == 2 and "password" in short.stderr and "8" in short.stderr
    odd = add("no spaces please")
    assert odd.returncode == 2 and "user name" in odd.stderr
    listed = run("user", "list", *where)
    assert listed.stdout.splitlines() == ["alice\tadmin", "bob\tviewer"]


@pytest.mark.slow
def test_train_writes_flat_metrics_and_diagnose_reads_them(tmp_path: Path, tiny_model_dir: Path, tiny_dataset_file: Path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({
        "model": str(tiny_model_dir), "dataset": str(tiny_dataset_file), "max_steps": 4, "batch_size": 2,
        "max_length": 64, "max_prompt_length": 32, "lambda": 0.2, "eval_fraction": 0.2,
    }))
    metrics = tmp_path / "metrics.jsonl"
    result = run("train", str(config), "--metrics-out", str(metrics))
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in metrics.read_text().splitlines()]
    train_lines = [line for line in lines if "loss" in line]
    assert [line["step"] for line in train_lines] == [1, 2, 3, 4]
    assert all(isinstance(value, (int, float)) for value in train_lines[0].values())  # flat: no nesting

    diagnosis = run("diagnose", str(metrics), "--json")
    assert diagnosis.returncode in (0, 1), diagnosis.stderr
    assert isinstance(json.loads(diagnosis.stdout), list)


def test_train_names_the_bad_field(tmp_path: Path) -> None:
    config = tmp_path / "bad.json"
    config.write_text(json.dumps({"learning_rate": -1, "batch_size": 4}))
    result = run("train", str(config))
    assert result.returncode == 1
    assert "learning_rate" in result.stderr and "greater than 0" in result.stderr


def test_serve_names_the_bad_setting_and_where_it_came_from(tmp_path: Path) -> None:
    flag = run("serve", "--port", "99999", "--data-dir", str(tmp_path))
    assert flag.returncode == 2
    assert "port must be at most 65535 (got 99999); the default is 8000 (set by --port or ORPO_DASH_PORT)" in flag.stderr
    env = subprocess.run([ORPO_DASH, "serve", "--data-dir", str(tmp_path)], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "ORPO_DASH_MAX_CONCURRENT_RUNS": "0"})
    assert env.returncode == 2
    assert "max_concurrent_runs must be at least 1 (got '0')" in env.stderr and "ORPO_DASH_MAX_CONCURRENT_RUNS" in env.stderr


def test_serve_with_the_ray_launcher_needs_the_ray_address(tmp_path: Path) -> None:
    result = run("serve", "--launcher", "ray", "--data-dir", str(tmp_path))
    assert result.returncode == 2
    assert "launcher='ray' needs ray_address" in result.stderr and "--ray-address" in result.stderr
    assert "--launcher" in run("serve", "--help").stdout


def test_train_hands_the_api_token_to_the_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    import trainer.worker
    from orpo_dash.cli import main

    seen: list[list[str]] = []
    monkeypatch.setattr(trainer.worker, "main", lambda argv: seen.append(argv) or 0)
    assert main(["train", "run.yaml", "--server", "http://127.0.0.1:9", "--token", "odt_flag"]) == 0
    assert seen[0][-2:] == ["--api-token", "odt_flag"]
    assert trainer.worker.parse_args(["run.yaml", "--server", "http://127.0.0.1:9"]).api_token is None
    monkeypatch.setenv("ORPO_DASH_TOKEN", "odt_env")
    assert trainer.worker.parse_args(["run.yaml", "--server", "http://127.0.0.1:9"]).api_token == "odt_env"
