"""Weights & Biases runs (docs/metrics.md, "Importing runs"): a run's history as the W&B UI or API exports it
(CSV, JSON or JSONL rows with `_step`, `_runtime`, `_timestamp` and the logged keys), and an offline run's
`run-<id>.wandb` file (W&B's own transaction log of protobuf records), read without the W&B service.

The `.wandb` file is read by the wandb package itself, an optional extra (`pip install "orpo-dash[import]"`):
since wandb 0.31 its reader lives in the `wandb-core` binary, and `wandb leet inspect --json FILE` prints each
record (history, config, summary, ...) as one JSON line; older versions' Python DataStore is gone.

Names: the Hugging Face WandbCallback logs TRL's X as `train/X` and eval_X as `eval/X`, at the step
`train/global_step` (W&B's own `_step` counts log calls); orpo_dash.metric_names.from_hf_logger maps them.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson

from orpo_dash import metric_names as m
from orpo_dash.diagnostics.records import MetricsFileError, Records
from orpo_dash.import_cli import WANDB_INSTALL
from orpo_dash.import_common import Columns, ImportedRun, RunImportError, hf_args_config, number, series_from_columns

WANDB_SUFFIX = ".wandb"
W_STEP, W_RUNTIME, W_TIMESTAMP = "_step", "_runtime", "_timestamp"
READ_TIMEOUT_SECONDS = 600
# W&B's own keys in a history row, which are not metrics: its step counter, run time, wall time, and
# its internal `_wandb.*` entries.
_OWN_KEYS = frozenset({W_STEP, W_RUNTIME, W_TIMESTAMP, m.HF_LOGGER_STEP})
_HISTORY_EXAMPLE = '{"_step": 0, "_runtime": 1.2, "_timestamp": 1700000000.5, "train/global_step": 1, "train/loss": 0.71}'
# A W&B chart panel's "Export CSV": "Step,<run> - train/loss,<run> - train/loss__MIN,<run> - train/loss__MAX".
_PANEL_STEP = "Step"
_PANEL_BOUNDS = ("__MIN", "__MAX")


def find_wandb_file(folder: Path) -> Path | None:
    """The `.wandb` file a folder stands for: a run folder's `run-<id>.wandb`; in a `wandb/` folder (or a
    folder holding one) the latest run's (`latest-run`, else the newest `run-*`/`offline-run-*` folder)."""
    own = sorted(folder.glob(f"run-*{WANDB_SUFFIX}"))
    if own:
        return own[-1]
    for base in (folder, folder / "wandb"):
        latest = base / "latest-run"
        if latest.is_dir() and (found := sorted(latest.glob(f"run-*{WANDB_SUFFIX}"))):
            return found[-1]
        # run-20240101_120000-<id>: the date in the name orders them; offline-run-... the same after its prefix.
        runs = sorted((p for p in base.glob("*run-*") if p.is_dir() and any(p.glob(f"run-*{WANDB_SUFFIX}"))),
                      key=lambda p: p.name.removeprefix("offline-"))
        if runs:
            return sorted(runs[-1].glob(f"run-*{WANDB_SUFFIX}"))[-1]
    return None


def is_history_export(file: Path) -> bool:
    """Whether a CSV/JSON/JSONL file is a W&B history export: its first record has W&B's `_step`, or (a
    chart panel's CSV) its header starts with `Step` and names columns `<run> - <key>`."""
    head = _head(file)
    if head is None:
        return False
    text = head.lstrip()
    if text.startswith(("{", "[")):
        return f'"{W_STEP}"' in text[:65536] and (f'"{W_RUNTIME}"' in text or f'"{W_TIMESTAMP}"' in text)
    try:
        header = next(csv.reader(io.StringIO(text.split("\n", 1)[0])))
    except (csv.Error, StopIteration):
        return False
    return W_STEP in header or (header[:1] == [_PANEL_STEP] and any(" - " in column for column in header[1:]))


def read_history_export(file: Path) -> ImportedRun:
    """A W&B history export: rows of `_step`, `_runtime`, `_timestamp` and the logged keys (a key missing
    from a row, an empty cell or null was not logged at that row), or a chart panel's CSV."""
    notes: list[str] = []
    head = (_head(file) or "").lstrip()
    rows: Iterable[tuple[int, dict[str, Any]]]
    if head.startswith(("{", "[")):
        rows = Records(file, notes)  # JSON rows (a list, or one object per line), with its line-numbered errors
    else:
        rows = _csv_rows(file, notes)
    columns = _columns(rows, file)
    if not columns:
        raise MetricsFileError(f"{file}: no numeric metrics found in the W&B history rows; expected "
                               f"W&B's history export, e.g. {_HISTORY_EXAMPLE}")
    run = _run_from_columns(columns, fmt="wandb_history", name=file.name.removesuffix(".gz").rsplit(".", 1)[0],
                            config={})
    run.notes.extend(notes)
    return run


def read_wandb_log(file: Path) -> ImportedRun:
    """An offline run's `run-<id>.wandb`: its history, config and name, through wandb's own reader."""
    config: dict[str, Any] = {}
    name = file.stem.removeprefix("run-")
    rows: list[tuple[int, dict[str, Any]]] = []
    notes: list[str] = []
    for number_, record in _wandb_records(file, notes):
        kind = record.get("type")
        if kind == "history":
            item = record.get("history", {}).get("item")
            if isinstance(item, dict):
                rows.append((number_, item))
        elif kind == "run":
            run = record.get("run", {})
            name = str(run.get("display_name") or run.get("run_id") or name)
            _update_config(config, run.get("config"))
        elif kind == "config":
            _update_config(config, record.get("config"))
    columns = _columns(rows, file)
    if not columns:
        raise MetricsFileError(f"{file}: the W&B run logged no numeric history (wandb.log) to import")
    settings = {key: value.get("value") if isinstance(value, dict) and "value" in value else value
                for key, value in config.items()}
    run = _run_from_columns(columns, fmt="wandb", name=name, config=hf_args_config(settings))
    run.notes.extend(notes)
    return run


def _run_from_columns(columns: Columns, *, fmt: str, name: str, config: dict[str, Any]) -> ImportedRun:
    hf_keys = any(key.startswith(m.HF_LOGGER_TRAIN_PREFIX) for key in columns)
    series, times = series_from_columns(columns, lambda key: m.from_hf_logger(key, hf_keys=hf_keys))
    return ImportedRun(format=fmt, name=name, config=config, series=series, times=times)


def _columns(rows: Iterable[tuple[int, dict[str, Any]]], file: Path) -> Columns:
    """Per logged key, its (step, value, time) points. The step is the Hugging Face callback's
    `train/global_step` when the run has one, else W&B's `_step`; a row with neither is refused."""
    columns: Columns = {}
    for lineno, row in rows:
        step = number(row.get(m.HF_LOGGER_STEP))
        if step is None:
            step = number(row.get(W_STEP))
        if step is None or step != step or step < 0 or step != int(step):
            raise MetricsFileError(f"{file}: row {lineno} has no step (neither {m.HF_LOGGER_STEP!r} nor {W_STEP!r} "
                                   f"holds a whole number); expected W&B's history export, e.g. {_HISTORY_EXAMPLE}")
        wall = number(row.get(W_TIMESTAMP))
        for key, raw in row.items():
            if key in _OWN_KEYS or key.startswith("_wandb") or raw is None or raw == "":
                continue
            value = number(raw)
            if value is None:
                continue  # text, media, histograms: not a scalar metric
            steps, values, walls = columns.setdefault(key, ([], [], []))
            steps.append(int(step))
            values.append(value)
            assert walls is not None
            walls.append(wall if wall is not None else float("nan"))
    for key, (steps, values, walls) in list(columns.items()):
        if walls is not None and any(w != w for w in walls):  # a time is missing: keep none for this key
            columns[key] = (steps, values, None)
    return columns


def _csv_rows(file: Path, notes: list[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    """Rows of a CSV export keyed by the logged key: W&B's run table (`_step`, ...), or a chart panel's
    (`Step`, `<run> - <key>`; its `__MIN`/`__MAX` columns are the chart's sampling bounds and are skipped)."""
    opener = gzip.open if file.suffix == ".gz" else open
    with opener(file, "rt", encoding="utf-8-sig", errors="replace", newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, [])
        keys: list[str | None] = list(header)
        if W_STEP not in header:
            keys = [W_STEP if column == _PANEL_STEP else None if column.endswith(_PANEL_BOUNDS)
                    else column.split(" - ", 1)[-1] for column in header]
        width = len(header)
        for cells in reader:
            if not cells:
                continue
            lineno = reader.line_num
            if len(cells) != width:
                raise MetricsFileError(f"{file}: line {lineno} has {len(cells)} cells, the header has {width} "
                                       "columns; expected W&B's history CSV, one row per logged step")
            yield lineno, {key: cell for key, cell in zip(keys, cells, strict=True) if key is not None}


def _head(file: Path) -> str | None:
    try:
        if file.suffix == ".gz":
            with gzip.open(file, "rt", encoding="utf-8-sig", errors="replace") as fh:
                return fh.read(65536)
        with open(file, encoding="utf-8-sig", errors="replace") as fh:
            return fh.read(65536)
    except (OSError, EOFError):
        return None


def _update_config(config: dict[str, Any], record: Any) -> None:
    if not isinstance(record, dict):
        return
    update = record.get("update")
    if isinstance(update, dict):
        config.update(update)
    for key in record.get("remove") or []:
        if isinstance(key, str):
            config.pop(key, None)


def _wandb_records(file: Path, notes: list[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    """(record number, record) of a .wandb file, as wandb's own reader prints them (`wandb leet inspect
    --json`). A file cut short (a run still writing, or killed) yields the records before the cut."""
    try:
        import wandb  # noqa: F401 - only to say what is missing before starting its CLI
    except ImportError:
        raise RunImportError(f"{file.name} is a W&B run file; reading it needs the wandb package: "
                             f"{WANDB_INSTALL}") from None
    # Its own settings folder and no telemetry: it reads one local file, nothing else.
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_ERROR_REPORTING": "false", "WANDB_SILENT": "true"}
    with tempfile.TemporaryDirectory(prefix="orpo-dash-wandb-") as home:
        env["WANDB_DIR"] = env["WANDB_CONFIG_DIR"] = env["WANDB_CACHE_DIR"] = home
        errors = Path(home) / "stderr.txt"
        with open(errors, "w+", encoding="utf-8", errors="replace") as err, subprocess.Popen(
                [sys.executable, "-m", "wandb", "leet", "inspect", "--json", str(file)], cwd=home, env=env,
                stdout=subprocess.PIPE, stderr=err, text=True, errors="replace") as reader:
            assert reader.stdout is not None
            count = 0
            for line in reader.stdout:
                count += 1
                # Only the records an import reads are parsed: a long run's file is mostly summary updates.
                if '"type":"history"' not in line and '"type":"config"' not in line and '"type":"run"' not in line:
                    continue
                try:
                    record = orjson.loads(line)
                except orjson.JSONDecodeError:
                    try:
                        record = json.loads(line)  # NaN/Infinity literals, which orjson refuses
                    except ValueError:
                        continue
                if isinstance(record, dict):
                    yield int(record.get("num") or count), record
            status = reader.wait(timeout=READ_TIMEOUT_SECONDS)
            err.seek(0)
            error = err.read()
    detail = " ".join(error.split())[:300]
    if status == 0 and detail:
        notes.append(f"wandb's reader: {detail}")  # e.g. "reached the end of an incomplete .wandb file"
    if status != 0:
        detail = detail or f"exit status {status}"
        raise MetricsFileError(f"{file}: not a readable W&B run file (wandb's reader: {detail}); expected the "
                               f"run-<id>.wandb file of a wandb/run-* or wandb/offline-run-* folder")
