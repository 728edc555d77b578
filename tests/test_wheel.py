"""`pip install orpo-dash` from a built wheel, into a clean venv without torch: the dashboard starts from
the installed package (not the repository) and serves every page, its static files and migrations."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO_ROOT, free_port

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(REPO_ROOT)], check=True, capture_output=True, timeout=300)
    (path,) = out.glob("orpo_dash-*.whl")
    return path


def test_wheel_carries_every_template_static_file_and_migration(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    tracked = subprocess.run(["git", "ls-files", "templates", "static", "migrations", "alembic.ini"], cwd=REPO_ROOT,
                             check=True, capture_output=True, text=True).stdout.split()
    assert tracked
    missing = [path for path in tracked if not any(name.endswith("/data/share/orpo-dash/" + path) for name in names)]
    assert missing == [], "add these to [tool.setuptools.data-files] in pyproject.toml"


def test_dashboard_installed_from_the_wheel_without_torch_serves_every_page(wheel: Path, tmp_path: Path) -> None:
    # Away from the repository and its PYTHONPATH: its egg-info would make pip think the package is installed.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120, cwd=elsewhere, env=env)
    python = venv / "bin" / "python"
    installed = subprocess.run([str(python), "-m", "pip", "install", "-q", str(wheel)], capture_output=True, text=True,
                               timeout=600, cwd=elsewhere, env=env)
    assert installed.returncode == 0, installed.stderr[-3000:]
    shown = subprocess.run([str(python), "-m", "pip", "show", "-f", "orpo-dash"], capture_output=True, text=True,
                           cwd=elsewhere, env=env).stdout
    assert "share/orpo-dash/templates/base.html" in shown, shown[-2000:]
    assert subprocess.run([str(python), "-c", "import torch"], capture_output=True, cwd=elsewhere, env=env).returncode != 0
    train = subprocess.run([str(venv / "bin" / "orpo-dash"), "train", "x.yaml"], cwd=elsewhere, env=env,
                           capture_output=True, text=True, timeout=60)
    assert train.returncode == 2 and 'pip install "orpo-dash[trainer]"' in train.stderr

    port = free_port()
    log = open(tmp_path / "server.log", "wb")
    server = subprocess.Popen([str(venv / "bin" / "orpo-dash"), "serve", "--port", str(port), "--data-dir",
                               str(tmp_path / "data")], cwd=elsewhere, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, (tmp_path / "server.log").read_text()
            try:
                if httpx.get(url + "/api/runs", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "server.log").read_text()
            time.sleep(0.2)
        dataset = tmp_path / "pairs.jsonl"
        dataset.write_text('{"prompt": "p", "chosen": "a", "rejected": "b"}\n')
        created = httpx.post(url + "/api/runs", params={"launch": "false"}, json={"dataset": str(dataset)}, timeout=30)
        assert created.status_code in (200, 201), created.text
        run_id = created.json()["id"]
        for page in ("/", "/runs/new", f"/runs/{run_id}", f"/compare?runs={run_id}"):
            response = httpx.get(url + page, timeout=30)
            assert response.status_code == 200, (page, response.text[:500])
            for asset in _local_assets(response.text):
                assert httpx.get(url + asset, timeout=30).status_code == 200, (page, asset)
        assert "torch" not in httpx.get(url + "/api/runs", timeout=30).text
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
    assert "Traceback" not in (tmp_path / "server.log").read_text()


def _local_assets(html: str) -> list[str]:
    import re

    # url_for gives absolute URLs on this server; keep their path (and query).
    found = re.findall(r'(?:src|href)="(?:http://127\.0\.0\.1:\d+)?(/(?:static|vendor)/[^"]+)"', html)
    assert any(".js" in path for path in found), "a page without its scripts proves nothing"
    return found
