"""Disk used by runs: checkpoint sizes, the data folder's usage, and deleting a run's checkpoints.

Deleting is confined like every other path (server/services/allowed_paths.py): only checkpoint-<step>
folders directly inside the run's output folder, and only when that folder resolves inside the output
root; a run still training keeps its checkpoints (its worker is writing and pruning them).
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from orpo_dash.protocol import TERMINAL_STATUSES
from server.models import Run
from server.services.allowed_paths import inside

# A data folder is runs and their checkpoints; stop counting somewhere sane if it holds far more.
MAX_WALKED_FILES = 200_000
_CHECKPOINT_NAME = re.compile(r"checkpoint-\d+")


def folder_bytes(folder: Path) -> int:
    """Bytes of the regular files under `folder` (links are not followed: they are someone else's files)."""
    total = files = 0
    for parent, _dirs, names in os.walk(folder, followlinks=False):
        for name in names:
            try:
                stat = os.lstat(os.path.join(parent, name))
            except OSError:
                continue  # deleted while we walked (a checkpoint being pruned)
            if not os.path.islink(os.path.join(parent, name)):
                total += stat.st_size
            files += 1
            if files >= MAX_WALKED_FILES:
                return total
    return total


def checkpoint_folders(run: Run) -> list[Path]:
    """The run's finished checkpoint folders (checkpoint-<step>), or none while its output folder does not exist."""
    if not run.output_dir:
        return []
    folder = Path(run.output_dir)
    try:
        return [path for path in folder.iterdir() if path.is_dir() and _CHECKPOINT_NAME.fullmatch(path.name)]
    except OSError:
        return []


def checkpoint_bytes(run: Run) -> int:
    return sum(folder_bytes(path) for path in checkpoint_folders(run))


@dataclass(frozen=True)
class Storage:
    data_dir: str
    data_bytes: int
    output_root: str
    checkpoint_bytes: int  # every run's checkpoints, wherever inside the output root they are
    free_bytes: int


def storage(*, data_dir: Path, output_root: Path, runs: list[Run]) -> Storage:
    data = data_dir.resolve()
    return Storage(
        data_dir=str(data), data_bytes=folder_bytes(data) if data.is_dir() else 0, output_root=str(output_root),
        checkpoint_bytes=sum(checkpoint_bytes(run) for run in runs),
        free_bytes=shutil.disk_usage(data if data.is_dir() else data.parent).free,
    )


class CannotDelete(ValueError):
    """The checkpoints may not be deleted now; the message says why and what to do."""


def delete_checkpoints(run: Run, *, output_root: Path) -> tuple[int, int]:
    """Remove the run's checkpoint folders; returns (folders, bytes) freed. The run and its metrics stay."""
    if run.status not in TERMINAL_STATUSES:
        raise CannotDelete(f"run {run.id} is {run.status}: its worker writes and prunes its checkpoints; stop it first")
    if not run.output_dir:
        return 0, 0
    folder = Path(run.output_dir).resolve()
    if not inside(folder, (output_root,)):
        raise CannotDelete(f"run {run.id}'s output folder {folder} is outside the output root {output_root} "
                           "(ORPO_DASH_OUTPUT_ROOT); the dashboard deletes nothing there")
    freed = removed = 0
    for path in checkpoint_folders(run):
        resolved = path.resolve()
        if resolved.parent != folder:  # a checkpoint-N symlink to a folder elsewhere: not ours to delete
            continue
        freed += folder_bytes(resolved)
        shutil.rmtree(resolved)
        removed += 1
    return removed, freed
