"""Which folders a run may read from and write to, checked on every path a form or the API gives.

The rule: a path from a user is resolved (`~`, `..` and every symlink along it), and it is used only if
the result lies inside one of the roots named for that use; otherwise the field gets one refusal that
names the allowed roots and never says whether the path exists or what it holds.

Roots (server/settings.py): `data_roots` for datasets, `model_roots` for models, `output_root` for
checkpoints. A model or a checkpoint to resume from may also come from under `output_root`, where
earlier runs saved theirs. Bundled names (`bundled:...`) and Hugging Face hub names (`org/name`) are
not paths and are not checked here; the worker fetches hub names itself.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orpo_dash.run_config import BUNDLED_DATASET, BUNDLED_MODEL

# What a hub repository id looks like: `name` or `org/name`, word characters, dots and dashes.
HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")
DATASET_SUFFIXES = (".jsonl", ".ndjson", ".json", ".csv", ".parquet")


@dataclass(frozen=True)
class PathRoots:
    """Resolved roots; each path field is checked against one group of them."""

    data: tuple[Path, ...]
    model: tuple[Path, ...]
    output: Path

    def for_field(self, field: str) -> tuple[tuple[Path, ...], str]:
        """(roots, the setting that adds one) for a run-config path field."""
        if field in ("dataset", "eval_dataset"):
            return self.data, "ORPO_DASH_DATA_ROOTS"
        if field in ("model", "resume_from"):
            return (*self.model, self.output), "ORPO_DASH_MODEL_ROOTS"
        return (self.output,), "ORPO_DASH_OUTPUT_ROOT"


def resolve(value: str) -> Path:
    """The real location `value` names, as the worker (started in this directory) would open it."""
    return Path(value).expanduser().resolve()


def inside(path: Path, roots: Iterable[Path]) -> bool:
    return any(path == root or path.is_relative_to(root) for root in roots)


def is_hub_name(value: str, *, dataset: bool) -> bool:
    """A name the worker looks up on the hub rather than on disk.

    A hub-shaped name that is also a local folder or file (relative to where the server runs) is a
    path: the worker's loaders would open the local one first.
    """
    if not HUB_NAME.match(value) or any(part in (".", "..") for part in value.split("/")):
        return False
    if dataset and value.lower().endswith(DATASET_SUFFIXES):
        return False
    try:
        return not Path(value).exists()
    except OSError:  # a component too long to be a file name
        return False


def path_fields(payload: Mapping[str, Any]) -> dict[str, str]:
    """field -> the path it holds, for the run-config fields whose value is a filesystem path."""
    found: dict[str, str] = {}
    for field, bundled, dataset in (
        ("model", BUNDLED_MODEL, False), ("dataset", BUNDLED_DATASET, True), ("eval_dataset", None, True),
    ):
        value = payload.get(field)
        if isinstance(value, str) and value and value != bundled and not is_hub_name(value, dataset=dataset):
            found[field] = value
    for field in ("resume_from", "output_dir"):
        value = payload.get(field)
        if isinstance(value, str) and value:
            found[field] = value
    return found


def refused_paths(payload: Mapping[str, Any], roots: PathRoots) -> dict[str, str]:
    """field -> why its path is refused, for every path field outside its roots."""
    errors: dict[str, str] = {}
    for field, value in path_fields(payload).items():
        allowed, setting = roots.for_field(field)
        try:
            ok = "\x00" not in value and inside(resolve(value), allowed)
        except (OSError, RuntimeError, ValueError):  # a symlink loop, a name too long: refused the same way
            ok = False
        if not ok:
            errors[field] = refusal(field, allowed, setting)
    return errors


def refusal(field: str, allowed: Iterable[Path], setting: str) -> str:
    """The one message for a refused path: the same whether it exists, and never its contents."""
    where = ", ".join(str(root) for root in allowed)
    return (f"{field} must be inside one of the folders this dashboard allows for it ({where}), after "
            f"following symlinks; move the files there, or ask whoever runs the dashboard to add the folder to {setting}")
