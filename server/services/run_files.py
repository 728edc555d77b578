"""A run's output files (checkpoints): list them and resolve one for download, never leaving the
run's `output_dir`.

Every path is resolved (symlinks followed, `..` collapsed) before it is compared with the resolved
output folder, so neither `../../etc/passwd` nor a symlink pointing elsewhere can escape it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from server.models import Run

# A listing stops here: a run folder is a handful of checkpoints, not a file server.
MAX_LISTED_FILES = 2000


class OutsideOutputDir(ValueError):
    """The requested path resolves outside the run's output folder."""


@dataclass(frozen=True)
class RunFile:
    path: str  # relative to output_dir, '/'-separated
    size: int
    modified: float


def output_root(run: Run) -> Path | None:
    """The run's resolved output folder, or None while it does not exist."""
    if not run.output_dir:
        return None
    root = Path(run.output_dir).resolve()
    return root if root.is_dir() else None


def _inside(root: Path, candidate: Path) -> bool:
    return candidate == root or candidate.is_relative_to(root)


def list_files(run: Run) -> list[RunFile]:
    """Regular files under the output folder, sorted by path. Hidden entries (a checkpoint still
    being written goes to `.checkpoint-N-xxxx/`) and links that lead outside are left out."""
    root = output_root(run)
    if root is None:
        return []
    found: list[RunFile] = []
    for folder, dirs, files in os.walk(root, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith("."):
                continue
            path = Path(folder) / name
            resolved = path.resolve()
            if not _inside(root, resolved) or not resolved.is_file():
                continue
            stat = resolved.stat()
            found.append(RunFile(path=path.relative_to(root).as_posix(), size=stat.st_size, modified=stat.st_mtime))
            if len(found) >= MAX_LISTED_FILES:
                return sorted(found, key=lambda f: f.path)
    return sorted(found, key=lambda f: f.path)


def resolve_file(run: Run, relative: str) -> Path | None:
    """The file to send for `relative`, or None if there is no such file.

    Raises OutsideOutputDir for anything that resolves outside the output folder, however it
    gets there (absolute paths, `..`, symlinks).
    """
    root = output_root(run)
    if root is None:
        return None
    if not relative or Path(relative).is_absolute() or "\x00" in relative:
        raise OutsideOutputDir(relative)
    candidate = (root / relative).resolve()
    if not _inside(root, candidate):
        raise OutsideOutputDir(relative)
    if any(part.startswith(".") for part in candidate.relative_to(root).parts):
        return None  # hidden entries are not listed, so they are not served either
    return candidate if candidate.is_file() else None
