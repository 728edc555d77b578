"""Helpers for dashboards started with auth on: create users through the CLI, log in, make API tokens."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "correct horse battery"
# Who the auth fixtures create, by role.
USERS = {"alice": "admin", "bob": "member", "carol": "viewer", "dave": "member"}


def add_user(database_url: str, data_dir: Path, name: str, role: str, password: str = PASSWORD) -> subprocess.CompletedProcess[str]:
    """`orpo-dash user add NAME --role ROLE --password-stdin`, as an operator would run it."""
    return subprocess.run(
        [sys.executable, "-m", "orpo_dash.cli", "user", "add", name, "--role", role, "--password-stdin",
         "--database-url", database_url, "--data-dir", str(data_dir)],
        input=password + "\n", capture_output=True, text=True, cwd=REPO_ROOT, timeout=60, check=False,
    )


def login(url: str, name: str, password: str = PASSWORD) -> httpx.Client:
    """A client holding a session cookie, sending the dashboard's own Origin like its pages do."""
    client = httpx.Client(base_url=url, headers={"Origin": url}, timeout=30)
    response = client.post("/login", data={"name": name, "password": password, "next": "/"})
    assert response.status_code == 303, response.text
    return client


def create_token(client: httpx.Client, label: str = "script") -> str:
    response = client.post("/settings/tokens", data={"label": label})
    assert response.status_code == 200, response.text
    found = re.search(r'id="new-token">([^<]+)<', response.text)
    assert found, "the account page did not show the new token"
    return found.group(1)
