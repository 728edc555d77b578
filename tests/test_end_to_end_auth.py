"""With auth on, training still reaches the dashboard: the workers it launches use their run's token,
and `orpo-dash train --server --token` registers the run as the token's user (docs/security.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import httpx
import pytest

from tests.accounts import create_token, login
from tests.conftest import REPO_ROOT, serve_with_auth
from tests.test_end_to_end import STEPS, _tiny_run

pytestmark = pytest.mark.slow


def test_launched_and_external_workers_train_with_auth_on(tmp_path: Path, tiny_model_dir: Path, tiny_dataset_file: Path) -> None:
    for server in serve_with_auth(tmp_path, {"ORPO_DASH_LAUNCH_WORKERS": "1"}, users=("bob",)):
        with closing(login(server.url, "bob")) as bob:
            launched = bob.post("/api/runs", json=_tiny_run(tiny_model_dir, tiny_dataset_file))
            assert launched.status_code == 201, launched.text
            token = create_token(bob)
        script = {"Authorization": f"Bearer {token}"}

        config = tmp_path / "run.json"
        fields = _tiny_run(tiny_model_dir, tiny_dataset_file)
        del fields["name"]  # a file holds RunConfig fields only; the name comes from --name
        config.write_text(json.dumps(fields))
        refused = subprocess.run(
            [sys.executable, "-m", "orpo_dash.cli", "train", str(config), "--server", server.url, "--name", "refused"],
            capture_output=True, text=True, cwd=REPO_ROOT, timeout=600, check=False,
            env={k: v for k, v in os.environ.items() if k != "ORPO_DASH_TOKEN"},
        )
        assert "--token" in refused.stderr + refused.stdout, refused.stderr
        trained = subprocess.run(
            [sys.executable, "-m", "orpo_dash.cli", "train", str(config), "--server", server.url, "--name", "from-cli", "--token", token],
            capture_output=True, text=True, cwd=REPO_ROOT, timeout=600, check=False,
        )
        assert trained.returncode == 0, trained.stderr[-3000:]

        runs = {run["name"]: run for run in httpx.get(server.url + "/api/runs", headers=script).json()}
        assert runs["from-cli"]["status"] == "completed" and runs["from-cli"]["created_by"] == "bob"
        assert runs["from-cli"]["last_step"] == STEPS
        run_id = launched.json()["id"]
        for _ in range(600):
            run = httpx.get(f"{server.url}/api/runs/{run_id}", headers=script).json()
            if run["status"] in ("completed", "failed"):
                break
            time.sleep(0.3)
        assert run["status"] == "completed", run["error"]
        assert run["created_by"] == "bob" and run["last_step"] == STEPS
