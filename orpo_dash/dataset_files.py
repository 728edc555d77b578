"""Read preference-pair files (.jsonl, .json, .csv, .parquet) into plain dicts.

Imports only the standard library and the run config (pyarrow lazily, for parquet), so the web
server can call `inspect_dataset` to validate and preview a dataset without importing torch; the
trainer reads files through the same functions.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from orpo_dash.file_checks import is_dir, is_file
from orpo_dash.run_config import BUNDLED_DATASET, REQUIRED_MESSAGES

BUNDLED_DATASET_FILE = Path(__file__).resolve().parent / "bundled" / "orpo_demo_prefs.jsonl"
SUFFIXES = (".jsonl", ".ndjson", ".json", ".csv", ".parquet")
REQUIRED_COLUMNS = ("chosen", "rejected")  # `prompt` too, unless chosen/rejected are full conversations


class DatasetError(ValueError):
    """A dataset that cannot be used; the message says what is wrong and how to fix it."""


def resolve_local(name: str) -> Path | None:
    """The file behind a dataset name, or None when it should be treated as a hub name.

    A name that looks like a file (known suffix, or contains a path separator) but does not
    exist raises instead of silently going to the network.
    """
    if not name.strip():
        raise DatasetError(REQUIRED_MESSAGES["dataset"])
    if name == BUNDLED_DATASET:
        if not BUNDLED_DATASET_FILE.is_file():
            raise DatasetError(f"the bundled dataset file is missing: {BUNDLED_DATASET_FILE}")
        return BUNDLED_DATASET_FILE
    path = Path(name).expanduser()
    if is_file(path):
        return path
    if is_dir(path):
        raise DatasetError(f"dataset {name!r} is a directory; point at a {'/'.join(SUFFIXES)} file")
    if path.suffix.lower() in SUFFIXES or name.startswith((".", "/", "~")):
        where = "" if path.is_absolute() or name.startswith("~") else f" (relative paths start at {Path.cwd()})"
        raise DatasetError(
            f"dataset file not found: {name}{where}. Give an existing {'/'.join(SUFFIXES)} file of "
            f"prompt/chosen/rejected pairs, or {BUNDLED_DATASET}"
        )
    return None


def read_records(path: Path) -> list[dict[str, Any]]:
    """All rows of a local file as dicts, by file suffix."""
    suffix = path.suffix.lower()
    try:
        if suffix in (".jsonl", ".ndjson"):
            return _read_jsonl(path)
        if suffix == ".json":
            return _read_json(path)
        if suffix == ".csv":
            return _read_csv(path)
        if suffix == ".parquet":
            return _read_parquet(path)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"could not read {path}: {exc}") from exc
    raise DatasetError(f"unsupported dataset file type {suffix!r} ({path}); use one of {', '.join(SUFFIXES)}")


def inspect_dataset(name: str, n_preview: int = 3) -> tuple[int, list[str], list[dict[str, Any]]]:
    """(row count, column names, first rows) of a local dataset file, for form validation/preview.

    Raises DatasetError for a missing/unreadable file or missing required columns, and for
    names that are not local files (hub datasets need the trainer to fetch them).
    """
    path = resolve_local(name)
    if path is None:
        raise DatasetError(f"{name!r} is not a local file; hub datasets are only checked when the run starts")
    records = read_records(path)
    columns = columns_of(records)
    check_columns(columns, records[:1], source=str(path))
    return len(records), columns, records[:n_preview]


def columns_of(records: list[dict[str, Any]]) -> list[str]:
    seen: dict[str, None] = {}
    for record in records[:100]:
        seen.update(dict.fromkeys(record))
    return list(seen)


def check_columns(columns: list[str], sample: list[dict[str, Any]], *, source: str) -> None:
    """Fail with the missing and found column names. `prompt` may be absent when chosen and
    rejected are full conversations (the shared leading messages become the prompt)."""
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    conversational = bool(sample) and isinstance(sample[0].get("chosen"), list)
    if "prompt" not in columns and not conversational:
        missing.insert(0, "prompt")
    if missing:
        raise DatasetError(
            f"dataset {source} is missing column(s) {', '.join(repr(c) for c in missing)}; "
            f"found columns: {', '.join(columns) or '(none)'}. Preference data needs prompt, chosen and rejected."
        )


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    records = []
    with path.open(encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from exc
            if not isinstance(record, dict):
                raise DatasetError(f"{path}:{lineno}: each line must be a JSON object, got {type(record).__name__}")
            records.append(record)
    return records


def _read_json(path: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from exc
    if isinstance(data, dict):
        # {"train": [...]} / {"data": [...]} wrappers, or column-oriented {"prompt": [...], ...}
        for key in ("train", "data", "rows"):
            if isinstance(data.get(key), list):
                data = data[key]
                break
        else:
            if data and all(isinstance(v, list) for v in data.values()):
                lengths = {len(v) for v in data.values()}
                if len(lengths) != 1:
                    raise DatasetError(f"{path}: column lists have different lengths {sorted(lengths)}")
                keys = list(data)
                data = [dict(zip(keys, row, strict=True)) for row in zip(*data.values(), strict=True)]
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise DatasetError(f"{path}: expected a JSON list of objects (or {{'train': [...]}})")
    return data


def _read_csv(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return [{k: _maybe_json(v) for k, v in row.items() if k is not None} for row in csv.DictReader(handle)]


def _maybe_json(value: str | None) -> Any:
    """CSV cells holding conversations are JSON lists; decode those, keep other text as is."""
    if value and value.lstrip().startswith("[{"):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _read_parquet(path: Path) -> list[dict[str, Any]]:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise DatasetError("reading .parquet files needs pyarrow: pip install pyarrow") from exc
    try:
        return pq.read_table(path).to_pylist()
    except Exception as exc:  # pyarrow raises its own ArrowInvalid family
        raise DatasetError(f"could not read parquet file {path}: {exc}") from exc
