"""Read a run's metrics from a file: our trainer's --metrics-out JSONL, or a TRL/HF Trainer log export."""

from __future__ import annotations

import csv
import gzip
import json
import math
from pathlib import Path

from orpo_dash import metric_names as m

_STEP_KEYS = ("step", "global_step")
_LONG_COLUMNS = {"step", "name", "value"}  # the dashboard's own exports, one point per row
_TRL_ONLY = {"log_odds_chosen", "rewards/accuracies", "logps/chosen", "logps/rejected"}


class MetricsFileError(ValueError):
    """The file is missing, empty or not a metrics log; the message names the problem."""


def load_metrics_file(path: str | Path) -> dict[str, list[tuple[int, float]]]:
    """Series per metric name, each sorted by step with one value per step (the last logged wins).

    Accepts JSONL (one flat object per step) or CSV with a header, either one gzipped when the name ends
    in .gz. A null value in our JSONL is the trainer's NaN/Inf and is read as NaN. Rows need `step` or `global_step`.
    Files with TRL's names (e.g. log_odds_chosen, rewards/accuracies, eval_ prefixed keys) are mapped
    through orpo_dash.metric_names.from_trl; our own names pass through unchanged.
    """
    p = Path(path)
    if not p.is_file():
        raise MetricsFileError(f"metrics file not found: {p}")
    if p.suffix == ".gz":
        try:
            text = gzip.decompress(p.read_bytes()).decode("utf-8", errors="replace")
        except (OSError, EOFError) as exc:
            raise MetricsFileError(f"{p}: not a readable gzip file: {exc}") from None
    else:
        text = p.read_text(encoding="utf-8", errors="replace")
    if not text.strip():
        raise MetricsFileError(f"metrics file is empty: {p}")
    rows = _json_rows(p, text) if text.lstrip().startswith(("{", "[")) else _csv_rows(p, text)
    trl = any(k in _TRL_ONLY or k.startswith("eval_") for row in rows for k in row)
    out: dict[str, dict[int, float]] = {}
    for lineno, row in enumerate(rows, start=1):
        step = next((row[k] for k in _STEP_KEYS if k in row and row[k] is not None), None)
        if step is None:
            raise MetricsFileError(f"{p}: record {lineno} has no 'step' or 'global_step'")
        try:
            step = int(float(step))
        except (TypeError, ValueError):
            raise MetricsFileError(f"{p}: record {lineno} has a non-numeric step {step!r}") from None
        values = {k: v for k, v in row.items() if k not in _STEP_KEYS}
        if trl:
            mapped = m.from_trl(values)
        else:  # our trainer writes NaN/Inf as null (strict JSON): it is a value, not a missing one
            mapped = {k: math.nan if v is None else float(v) for k, v in values.items() if v is None or _is_number(v)}
        for name, value in mapped.items():
            out.setdefault(name, {})[step] = value
    if not out:
        raise MetricsFileError(f"{p}: no numeric metrics found")
    return {name: sorted(by_step.items()) for name, by_step in out.items()}


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _json_rows(p: Path, text: str) -> list[dict]:
    stripped = text.strip()
    if stripped.startswith("["):  # a log_history list (trainer_state.json style), not JSONL
        try:
            data = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise MetricsFileError(f"{p}: not valid JSON: {exc}") from None
        rows = data
        if rows and all(isinstance(r, dict) and isinstance(r.get("points"), list) for r in rows):
            # The runs list's export of several selected runs: one per-run export each.
            _one_run(p, [r.get("run", {}).get("id") for r in rows])
            rows = _pivot(p, rows[0]["points"])
    elif (whole := _whole_json(stripped)) is not None:
        # One JSON document: the dashboard's JSON export (points), the Hugging Face Trainer's
        # trainer_state.json (pretty-printed, its history under log_history), or a one-record JSONL file.
        rows = _pivot(p, whole["points"]) if isinstance(whole.get("points"), list) else whole.get("log_history", [whole])
    else:
        rows = []
        for lineno, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))  # NaN/Infinity literals are accepted, on purpose
            except json.JSONDecodeError as exc:
                raise MetricsFileError(f"{p}: line {lineno} is not valid JSON: {exc.msg}") from None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise MetricsFileError(f"{p}: expected one JSON object per line (or a list of objects)")
    return rows


def _one_run(p: Path, run_ids: list) -> None:
    if len(run_ids) > 1:
        raise MetricsFileError(
            f"{p} holds {len(run_ids)} runs ({', '.join(map(str, run_ids))}); diagnose one run at a time: "
            "export it from its row in the runs list or from its run page"
        )


def _pivot(p: Path, points: list) -> list[dict]:
    """The dashboard's exports list one point per row (step, name, value): one row per step instead.
    A missing value is what the dashboard stores for NaN/Inf, so it stays None (read as NaN)."""
    by_step: dict[int, dict] = {}
    for i, point in enumerate(points, start=1):
        if not isinstance(point, dict) or not _LONG_COLUMNS <= point.keys():
            raise MetricsFileError(f"{p}: point {i} is not an object with step, name and value")
        try:
            step, value = int(float(point["step"])), None if point["value"] is None else float(point["value"])
        except (TypeError, ValueError):
            raise MetricsFileError(f"{p}: point {i} has a non-numeric step or value") from None
        by_step.setdefault(step, {"step": step})[str(point["name"])] = value
    return [by_step[s] for s in sorted(by_step)]


def _whole_json(text: str) -> dict | None:
    """The text parsed as one JSON object, or None when it is not one (e.g. JSONL of several lines)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


def _csv_rows(p: Path, text: str) -> list[dict]:
    reader = csv.DictReader(text.splitlines())
    if not reader.fieldnames or not any(k in reader.fieldnames for k in _STEP_KEYS):
        raise MetricsFileError(f"{p}: not JSONL, and not a CSV with a 'step' or 'global_step' column")
    if _LONG_COLUMNS <= set(reader.fieldnames):  # the dashboard's CSV export: an empty value was non-finite
        points = [{**row, "value": None if not row["value"] else row["value"]} for row in reader]
        if "run_id" in reader.fieldnames:  # the runs list's export of several selected runs
            _one_run(p, list(dict.fromkeys(row["run_id"] for row in points)))
        return _pivot(p, points)
    rows = []
    for row in reader:
        parsed: dict[str, object] = {}
        for key, raw in row.items():
            if key is None or raw is None or raw.strip() == "":
                continue  # HF exports leave cells empty where a row did not log that metric
            try:
                parsed[key] = float(raw)
            except ValueError:
                continue  # text columns (run names, dates) are not metrics
            if key in _STEP_KEYS and not math.isfinite(parsed[key]):  # type: ignore[arg-type]
                raise MetricsFileError(f"{p}: non-finite step {raw!r}")
        rows.append(parsed)
    return rows
