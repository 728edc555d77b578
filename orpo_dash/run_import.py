"""A run made elsewhere, read from its files: metrics under our names, its config where the source has one.

Sources (docs/metrics.md, "Importing runs"):
- a Hugging Face / TRL `trainer_state.json`, or a checkpoint folder holding one (its `config.json`, the
  model's, names the model);
- the dashboard's own exports (JSON with the run's config, CSV) and our trainer's `--metrics-out` JSONL,
  or a TRL log history as JSONL/CSV: everything `orpo-dash diagnose` reads (orpo_dash.diagnostics.loading);
- TensorBoard event files (`events.out.tfevents.*`, or a folder of them), read with the `tensorboard`
  package's own event reader, an optional extra: `pip install "orpo-dash[import]"`.

Names are mapped as `diagnose` maps them (orpo_dash.metric_names). The server calls read_run() on an
uploaded file; the CLI only finds the file to upload in a folder (find_run_file).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from orpo_dash import import_mlflow, import_wandb
from orpo_dash import metric_names as m
from orpo_dash.diagnostics.loading import load_metrics_file
from orpo_dash.diagnostics.records import MetricsFileError
from orpo_dash.import_archive import is_archive
from orpo_dash.import_cli import FORMATS, TENSORBOARD_INSTALL
from orpo_dash.import_common import Columns, ImportedRun, RunImportError, is_number, series_from_columns

__all__ = ["ImportedRun", "RunImportError", "find_run_file", "read_run", "suggested_name"]

TENSORBOARD_MARK = "tfevents"
# trainer_state.json's settings -> our RunConfig fields (what the run page's configuration table shows).
TRAINER_STATE_CONFIG = {
    "max_steps": "max_steps",
    "num_train_epochs": "num_epochs",
    "train_batch_size": "batch_size",
    "logging_steps": "logging_every",
    "eval_steps": "eval_every",
    "save_steps": "save_every",
}

def find_run_file(path: str | Path) -> Path:
    """The one file to read for `path`: itself, or in a folder its trainer_state.json or its newest
    TensorBoard event file (looked for in the folder and one level down, e.g. runs/<date>/)."""
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise RunImportError(f"{path}: no such file or folder")
    if (wandb_file := import_wandb.find_wandb_file(path)) is not None:
        return wandb_file
    for pattern in ("trainer_state.json", "*/trainer_state.json"):
        found = sorted(path.glob(pattern))
        if found:
            return found[-1]  # checkpoint-500 sorts after checkpoint-100: the latest holds the whole history
    events = sorted((p for p in path.rglob(f"*{TENSORBOARD_MARK}*") if p.is_file()), key=lambda p: p.stat().st_size)
    if events:
        return events[-1]
    raise RunImportError(f"{path} is a folder with no trainer_state.json, no TensorBoard event file "
                         f"(events.out.tfevents.*) and no W&B run (run-<id>.wandb) in it; expected {FORMATS}")


def suggested_name(file: Path, *, top: Path | None = None) -> str | None:
    """A run name for a file found on disk: its folder's name for trainer_state.json and TensorBoard files
    (`my-run/checkpoint-500/trainer_state.json` -> "my-run checkpoint-500"), None for a W&B run file (it
    holds the run's own name) and the MLflow run `orpo-dash import` read (the same), else the file's stem.
    `top`: no folder at or above it names the run (an unpacked archive's folder); None when only it is left."""
    if file.suffix == import_wandb.WANDB_SUFFIX or file.name.startswith("mlflow-run-") or is_archive(file.name):
        return None  # the run's own name, or (an archive) the name of what the dashboard finds in it
    if file.name == "trainer_state.json" or TENSORBOARD_MARK in file.name:
        folder = file.resolve().parent
        top = top.resolve() if top is not None else None
        if folder == top:
            return None
        if folder.name.startswith("checkpoint-") and folder.parent.name and folder.parent != top:
            return f"{folder.parent.name} {folder.name}"
        return folder.name or file.stem
    return file.name.removesuffix(".gz").rsplit(".", 1)[0]


def model_config_name(folder: Path) -> str | None:
    """The model a checkpoint folder's config.json names (`_name_or_path`), if any."""
    config = folder / "config.json"
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    name = data.get("_name_or_path") if isinstance(data, dict) else None
    return name if isinstance(name, str) and name else None


def read_run(path: str | Path, *, display_name: str | None = None, source: str | None = None) -> ImportedRun:
    """Read one file (or a folder holding one) as a run. `display_name` replaces the path in messages
    (the server reads an uploaded copy); `source` is diagnose's --source, whose a bare log_odds_ratio is."""
    file = find_run_file(path)
    shown_as = display_name or str(file)
    try:
        if TENSORBOARD_MARK in file.name:
            run = _read_tensorboard(file)
        elif file.suffix == import_wandb.WANDB_SUFFIX:
            run = import_wandb.read_wandb_log(file)
        elif import_mlflow.is_mlflow_document(file):
            run = import_mlflow.read_mlflow_document(file)
        elif import_wandb.is_history_export(file):
            run = import_wandb.read_history_export(file)
        else:
            run = _read_metrics_file(file, source)
    except MetricsFileError as error:
        message = str(error).replace(str(file), shown_as)
        if "expected" not in message:
            message += f"; expected {FORMATS}"
        raise RunImportError(message) from None
    except (csv.Error, ValueError, OverflowError, RecursionError) as error:
        # What the readers do not phrase themselves: a CSV cell past the csv module's limit, a JSON document
        # nested too deep, a number too large for a float.
        raise RunImportError(f"{shown_as} cannot be read ({type(error).__name__}: {str(error)[:200]}); "
                             f"expected {FORMATS}") from None
    if not run.series:
        raise RunImportError(f"{shown_as}: no numeric metrics found; expected {FORMATS}")
    run.config["imported_from"] = {"format": run.format, "file": Path(shown_as).name}
    if file.name == "trainer_state.json" and (model := model_config_name(file.parent)):
        run.config.setdefault("model", model)
    return run


def _read_metrics_file(file: Path, source: str | None) -> ImportedRun:
    notes: list[str] = []
    series = load_metrics_file(file, source=source, notes=notes)
    name, config, fmt = file.stem, {}, "metrics_file"
    header = _json_header(file)
    if isinstance(header.get("log_history"), list):
        fmt = "trainer_state"
        config = {ours: header[theirs] for theirs, ours in TRAINER_STATE_CONFIG.items()
                  if is_number(header.get(theirs)) and header[theirs] > 0}
        name = file.parent.name if file.parent.name.startswith("checkpoint-") else file.stem
    elif isinstance(header.get("run"), dict):  # the dashboard's own JSON export
        exported = header["run"]
        config = dict(exported.get("config") or {})
        config.pop("imported_from", None)
        name = str(exported.get("name") or name)
    return ImportedRun(format=fmt, name=name, config=config, series=series, notes=notes)


def _json_header(file: Path) -> dict[str, Any]:
    """The top-level object of a JSON document (trainer_state.json, a JSON export), without its long lists."""
    if file.suffix != ".json":
        return {}
    try:
        import orjson

        data = orjson.loads(file.read_bytes())
    except (OSError, ValueError):
        try:
            data = json.loads(file.read_text(encoding="utf-8-sig"))  # NaN literals, which orjson refuses
        except (OSError, ValueError):
            return {}
    if not isinstance(data, dict):
        return {}
    data.pop("points", None)
    return data


def _read_tensorboard(file: Path) -> ImportedRun:
    try:
        from tensorboard.backend.event_processing import event_accumulator
    except ImportError:
        raise RunImportError(f"{file.name} is a TensorBoard event file; reading it needs the tensorboard package: "
                           f"{TENSORBOARD_INSTALL}") from None
    # size_guidance 0: keep every scalar (the default samples 10,000 per tag).
    accumulator = event_accumulator.EventAccumulator(str(file), size_guidance={event_accumulator.SCALARS: 0,
                                                                              event_accumulator.TENSORS: 0})
    try:
        accumulator.Reload()
    except Exception as error:  # noqa: BLE001 - its reader raises many types on a damaged file
        raise MetricsFileError(f"{file}: not a readable TensorBoard event file ({error})") from None
    columns: Columns = {}
    tags = accumulator.Tags()
    for tag in tags.get("scalars", []):
        events = accumulator.Scalars(tag)
        columns[tag] = ([e.step for e in events], [e.value for e in events], [e.wall_time for e in events])
    for tag in tags.get("tensors", []):  # torch's SummaryWriter.add_scalar under the v2 summary format
        events = accumulator.Tensors(tag)
        values = []
        for e in events:
            array = _tensor_value(e.tensor_proto)
            if array is None:
                break
            values.append(array)
        else:
            columns[tag] = ([e.step for e in events], values, [e.wall_time for e in events])
    hf_keys = any(tag.startswith(m.HF_LOGGER_TRAIN_PREFIX) for tag in columns)
    series, times = series_from_columns(columns, lambda tag: m.from_hf_logger(tag, hf_keys=hf_keys))
    if not series:
        raise MetricsFileError(f"{file}: the TensorBoard file holds no scalars")
    name = file.parent.name or file.name
    return ImportedRun(format="tensorboard", name=name, config={}, series=series, times=times)


def _tensor_value(proto: Any) -> float | None:
    from tensorboard.util import tensor_util

    array = tensor_util.make_ndarray(proto)
    return float(array) if array.size == 1 and array.dtype.kind in "fiu" else None
