"""Which checkpoints stay on disk: the newest `keep_last_checkpoints`, plus the best by eval/loss when
`keep_best_checkpoint` is on. Everything else named checkpoint-<step> in the run's output folder is
deleted after each save, so a run holds a bounded number of checkpoints however long it trains.

The score of a checkpoint is the eval/loss measured at its own step, written beside it in
CHECKPOINT_INFO by the recipe; one saved without an evaluation at its step has no score and is never
"best". Imports no torch.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

CHECKPOINT_INFO = "checkpoint_info.json"
_CHECKPOINT_NAME = re.compile(r"checkpoint-(\d+)")


def checkpoints(output_dir: str | Path) -> list[tuple[int, Path]]:
    """(step, folder) of every finished checkpoint in output_dir, oldest first. A save still in progress
    writes to a hidden temporary folder, which is not listed."""
    folder = Path(output_dir)
    if not folder.is_dir():
        return []
    found = [(int(match.group(1)), path) for path in folder.iterdir()
             if path.is_dir() and (match := _CHECKPOINT_NAME.fullmatch(path.name))]
    return sorted(found)


def write_info(folder: Path, *, step: int, eval_loss: float | None) -> None:
    score = eval_loss if eval_loss is not None and math.isfinite(eval_loss) else None
    (folder / CHECKPOINT_INFO).write_text(json.dumps({"step": step, "eval_loss": score}))


def eval_loss_of(folder: Path) -> float | None:
    try:
        value = json.loads((folder / CHECKPOINT_INFO).read_text()).get("eval_loss")
    except (OSError, ValueError, AttributeError):
        return None
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def to_delete(output_dir: str | Path, *, keep_last: int, keep_best: bool) -> list[Path]:
    """The checkpoint folders the policy no longer keeps, oldest first; keep_last 0 keeps them all."""
    found = checkpoints(output_dir)
    if keep_last <= 0:
        return []
    kept = {path for _, path in found[-keep_last:]}
    if keep_best:
        scored = [(loss, path) for _, path in found if (loss := eval_loss_of(path)) is not None]
        if scored:
            kept.add(min(scored, key=lambda item: item[0])[1])
    return [path for _, path in found if path not in kept]


def prune(output_dir: str | Path, *, keep_last: int, keep_best: bool) -> list[Path]:
    """Delete what to_delete names; returns the folders removed."""
    removed = to_delete(output_dir, keep_last=keep_last, keep_best=keep_best)
    for path in removed:
        shutil.rmtree(path, ignore_errors=True)
    return removed
