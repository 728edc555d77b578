"""Boundaries the design depends on: the server loads neither torch nor the trainer; the trainer never
imports the server; the shared core imports neither side (its CLI entry point does, lazily).

numpy is not checked: the server runs the pitfall detectors (orpo_dash.diagnostics), which use it.
"""

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
        "print(','.join(sorted(m for m in ('torch', 'transformers', 'trainer', 'ray') if m in sys.modules)))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert result.stdout.strip() == "", result.stdout


def _imported_modules(folder: Path) -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
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


def test_server_never_imports_the_trainer() -> None:
    offenders = [(path, module) for path, module in _imported_modules(ROOT / "server") if module.split(".")[0] == "trainer"]
    assert offenders == []


def test_shared_core_imports_neither_side() -> None:
    cli = ROOT / "orpo_dash" / "cli.py"  # the entry point dispatches to both sides, lazily inside functions
    offenders = [
        (path, module) for path, module in _imported_modules(ROOT / "orpo_dash")
        if module.split(".")[0] in ("server", "trainer", "torch", "transformers", "fastapi", "sqlalchemy")
        and Path(path) != cli
    ]
    assert offenders == []


STATUS_SERVICE = ROOT / "server" / "services" / "run_status.py"


def _status_writes(path: Path) -> list[str]:
    """Places in a module that set a status: `x.status = ...` (also in tuple targets and augmented or
    annotated assignments), `Run(status=...)`, and `.values(status=...)` of an UPDATE."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = list(node.targets)
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target]
        while targets:
            target = targets.pop()
            if isinstance(target, (ast.Tuple, ast.List)):
                targets.extend(target.elts)
            elif isinstance(target, ast.Attribute) and target.attr == "status":
                found.append(f"{path}:{target.lineno}")
        if isinstance(node, ast.Call):
            callee = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if callee in ("Run", "values") and any(keyword.arg == "status" for keyword in node.keywords):
                found.append(f"{path}:{node.lineno}")
    return found


def test_only_the_status_service_changes_a_run_status() -> None:
    # One place for status transitions (server/services/run_status.py lists them): a route, the launcher
    # or a background loop that set it directly would slip past the rules kept there.
    offenders = [
        place for path in (ROOT / "server").rglob("*.py") if path != STATUS_SERVICE for place in _status_writes(path)
    ]
    assert offenders == []
    assert _status_writes(STATUS_SERVICE), "the check no longer sees the service's own status writes"
