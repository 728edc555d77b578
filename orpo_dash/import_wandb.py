"""Weights & Biases runs (docs/metrics.md, "Importing runs"): a run's history as the W&B UI or API exports it
(CSV, JSON or JSONL rows with `_step`, `_runtime`, `_timestamp` and the logged keys), and an offline run's
`run-<id>.wandb` file (W&B's own transaction log of protobuf records), read without the W&B service.

The `.wandb` file is read in-process: orpo_dash.wandb_datastore undoes its framing and wandb's own protobuf
classes (`wandb.proto.wandb_internal_pb2.Record`, from the wandb package, an optional extra:
`pip install "orpo-dash[import]"`) parse each record; no W&B service, binary or network is used. History items
hold JSON values (`value_json`), parsed with orjson a whole record at a time and gathered into numpy columns.

Names: the Hugging Face WandbCallback logs TRL's X as `train/X` and eval_X as `eval/X`, at the step
`train/global_step` (W&B's own `_step` counts log calls); orpo_dash.metric_names.from_hf_logger maps them.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Iterable, Iterator, Sequence
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from orpo_dash import metric_names as m
from orpo_dash.diagnostics.records import MetricsFileError, Records
from orpo_dash.import_cli import WANDB_INSTALL
from orpo_dash.import_common import (
    ArrayColumns,
    Columns,
    ImportedRun,
    RunImportError,
    hf_args_config,
    number,
    series_from_columns,
)
from orpo_dash.wandb_datastore import DatastoreError, scan

WANDB_SUFFIX = ".wandb"
W_STEP, W_RUNTIME, W_TIMESTAMP = "_step", "_runtime", "_timestamp"
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
    """An offline run's `run-<id>.wandb`: its history, config and name, its records parsed by wandb's own
    protobuf classes. A file cut short (a run still writing, or killed) gives the records before the cut."""
    # wandb_internal_pb2 re-exports the module wandb built for the installed protobuf major version (v5, v6, v7).
    try:
        from google.protobuf.message import DecodeError
        from wandb.proto.wandb_internal_pb2 import Record  # type: ignore[attr-defined]
    except ImportError:
        raise RunImportError(f"{file.name} is a W&B run file; reading it needs the wandb package: "
                             f"{WANDB_INSTALL}") from None
    config: dict[str, Any] = {}
    name = file.stem.removeprefix("run-")
    history = _History()
    notes: list[str] = []
    record = Record()
    try:
        for raw in scan(file.read_bytes(), notes):
            record.ParseFromString(raw)
            kind = record.WhichOneof("record_type")
            if kind == "history":
                history.add(record.num, record.history.item, file)
            elif kind == "run":
                name = record.run.display_name or record.run.run_id or name
                _update_config(config, record.run.config)
            elif kind == "config":
                _update_config(config, record.config)
    except (DatastoreError, DecodeError) as error:
        raise MetricsFileError(f"{file}: not a readable W&B run file ({error}); expected the run-<id>.wandb "
                               f"file of a wandb/run-* or wandb/offline-run-* folder") from None
    columns = history.columns(file)
    if not columns:
        raise MetricsFileError(f"{file}: the W&B run logged no numeric history (wandb.log) to import")
    settings = {key: value.get("value") if isinstance(value, dict) and "value" in value else value
                for key, value in config.items()}
    run = _run_from_columns(columns, fmt="wandb", name=name, config=hf_args_config(settings))
    run.notes.extend(notes)
    return run


class _History:
    """A .wandb file's history records gathered as columns. A run logs the same keys at most steps, so records
    are grouped by their keys, and each group becomes one numpy table at the end, not point by point."""

    def __init__(self) -> None:
        self._count = 0
        # sorted keys of a record -> (position in the file, record number, values in key order) per record
        self._groups: dict[tuple[str, ...], tuple[list[int], list[int], list[list[Any]]]] = {}

    def add(self, num: int, items: Sequence[Any], file: Path) -> None:
        items = list(items)  # each pass over a protobuf repeated field builds its Python objects again
        # A key is `key`, or (as wandb-core writes them) `nested_key`: one part for a flat key like train/loss.
        # wandb-core writes a record's items in no fixed order: sorted, records of the same keys group together.
        pairs = sorted(zip([item.key or ".".join(item.nested_key) for item in items],
                           [item.value_json for item in items], strict=True))
        text = "[" + ",".join([value for _, value in pairs]) + "]"  # one parse per record, not per value
        try:
            values = orjson.loads(text)
        except orjson.JSONDecodeError:
            try:
                values = json.loads(text)  # NaN/Infinity literals, which orjson refuses
            except ValueError:
                raise MetricsFileError(f"{file}: history record {num} holds a value that is not JSON; expected "
                                       "the run-<id>.wandb file of a wandb/run-* or wandb/offline-run-* folder") from None
        keys = tuple([key for key, _ in pairs])
        group = self._groups.get(keys)
        if group is None:
            group = self._groups[keys] = ([], [], [])
        group[0].append(self._count)
        group[1].append(num)
        group[2].append(values)
        self._count += 1

    def columns(self, file: Path) -> ArrayColumns:
        """What `_columns` makes of the same rows: per logged key its (step, value, time) points in file order,
        the step `train/global_step` where a row has it, else `_step`; a row with neither is refused."""
        pieces: dict[str, list[tuple[np.ndarray, ...]]] = {}
        for keys, (order, nums, rows) in self._groups.items():
            table, ok = _table(rows, len(keys))
            at = {key: j for j, key in enumerate(keys)}
            absent = (np.full(len(rows), np.nan), np.zeros(len(rows), dtype=bool))
            hf_step, hf_ok = (table[:, at[m.HF_LOGGER_STEP]], ok[:, at[m.HF_LOGGER_STEP]]) \
                if m.HF_LOGGER_STEP in at else absent
            own_step, own_ok = (table[:, at[W_STEP]], ok[:, at[W_STEP]]) if W_STEP in at else absent
            steps = np.where(hf_ok, hf_step, own_step)
            with np.errstate(invalid="ignore"):
                bad = ~(hf_ok | own_ok) | ~np.isfinite(steps) | (steps < 0) | (steps != np.floor(steps))
            if bad.any():
                lineno = min(num for num, b in zip(nums, bad.tolist(), strict=True) if b)
                raise MetricsFileError(f"{file}: row {lineno} has no step (neither {m.HF_LOGGER_STEP!r} nor "
                                       f"{W_STEP!r} holds a whole number); expected W&B's history export, "
                                       f"e.g. {_HISTORY_EXAMPLE}")
            walls, walls_ok = (table[:, at[W_TIMESTAMP]], ok[:, at[W_TIMESTAMP]]) if W_TIMESTAMP in at else absent
            group = (np.asarray(order, dtype=np.int64), steps.astype(np.int64), walls, walls_ok)
            for key, j in at.items():
                if key in _OWN_KEYS or key.startswith("_wandb"):
                    continue
                logged = ok[:, j]
                if logged.all():
                    pieces.setdefault(key, []).append((*group, table[:, j]))
                elif logged.any():
                    pieces.setdefault(key, []).append((*(part[logged] for part in group), table[logged, j]))
        columns: ArrayColumns = {}
        for key, parts in pieces.items():
            in_file_order = np.argsort(np.concatenate([part[0] for part in parts]), kind="stable")
            steps_, walls_, walls_ok_, values_ = (np.concatenate([part[i] for part in parts])[in_file_order]
                                                  for i in (1, 2, 3, 4))
            # a time is missing: keep none for this key (as for the exports)
            columns[key] = (steps_, values_, walls_ if walls_ok_.all() else None)
        return columns


def _table(rows: list[list[Any]], width: int) -> tuple[np.ndarray, np.ndarray]:
    """A group's rows as one float table (NaN where not a number) and where each cell is one. Rows of plain
    ints and floats (nearly every run) convert in one numpy call; others column by column with `_numbers`."""
    if set(map(type, chain.from_iterable(rows))) <= {float, int}:
        return np.array(rows, dtype=np.float64).reshape(len(rows), width), np.ones((len(rows), width), dtype=bool)
    table, ok = np.empty((len(rows), width)), np.empty((len(rows), width), dtype=bool)
    for j in range(width):
        table[:, j], ok[:, j] = _numbers([row[j] for row in rows])
    return table, ok


def _numbers(raw: list[Any]) -> tuple[np.ndarray, np.ndarray]:
    """Logged values as floats, NaN where not a number, and whether each is one (`number`'s rule: numbers,
    numeric strings, the NaN/Infinity words; not booleans, text, media, null or a key the row lacks)."""
    kinds = set(map(type, raw))
    if kinds <= {float, int}:
        return np.asarray(raw, dtype=np.float64), np.ones(len(raw), dtype=bool)
    if kinds <= {float, int, type(None)}:
        ok = np.fromiter((value is not None for value in raw), dtype=bool, count=len(raw))
        return np.asarray([np.nan if value is None else value for value in raw], dtype=np.float64), ok
    found = [number(value) for value in raw]
    ok = np.fromiter((value is not None for value in found), dtype=bool, count=len(found))
    return np.asarray([np.nan if value is None else value for value in found], dtype=np.float64), ok


def _run_from_columns(columns: Columns | ArrayColumns, *, fmt: str, name: str, config: dict[str, Any]) -> ImportedRun:
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
    """Apply a W&B ConfigRecord (`update` and `remove` items; a value is JSON, a key is `key` or the
    parts of `nested_key`) to the config so far."""
    for item in record.update:
        path = [item.key] if item.key else list(item.nested_key)
        if not path:
            continue
        try:
            value = orjson.loads(item.value_json)
        except orjson.JSONDecodeError:
            try:
                value = json.loads(item.value_json)  # NaN/Infinity literals
            except ValueError:
                continue  # a setting we cannot read is not one to import
        target = config
        for part in path[:-1]:
            inner = target.get(part)
            if not isinstance(inner, dict):
                inner = target[part] = {}
            target = inner
        target[path[-1]] = value
    for item in record.remove:
        path = [item.key] if item.key else list(item.nested_key)
        target = config
        for part in path[:-1]:
            inner = target.get(part)
            target = inner if isinstance(inner, dict) else {}
        if path:
            target.pop(path[-1], None)
