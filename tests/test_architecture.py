"""Boundaries the design depends on: the server never loads torch; the trainer never imports the server."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_server_starts_without_importing_torch(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from server.app import create_app\n"
        "from server.settings import Settings\n"
        f"create_app(Settings(data_dir={str(tmp_path)!r}))\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'numpy.linalg._umath_linalg') if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert "torch" not in result.stdout and "transformers" not in result.stdout, result.stdout


def _imported_modules(folder: Path) -> set[tuple[str, str]]:
    found = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found.update((str(path), alias.name) for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                found.add((str(path), node.module))
    return found


def test_trainer_never_imports_the_server() -> None:
    offenders = [(path, module) for path, module in _imported_modules(ROOT / "trainer") if module.split(".")[0] == "server"]
    assert offenders == []


def test_shared_core_imports_neither_side() -> None:
    offenders = [
        (path, module) for path, module in _imported_modules(ROOT / "orpo_dash")
        if module.split(".")[0] in ("torch", "transformers", "fastapi", "sqlalchemy")
        and not path.endswith("cli.py")  # the CLI dispatches to both, lazily inside functions
    ]
    assert offenders == []
