"""The packages type-check cleanly under mypy (configured in pyproject.toml's [tool.mypy])."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_mypy_passes() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "orpo_dash", "server", "trainer"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, f"mypy failed:\n{result.stdout}{result.stderr}"
