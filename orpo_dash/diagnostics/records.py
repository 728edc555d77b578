"""The records of a metrics file, one at a time: JSONL and CSV are streamed, a JSON document is read whole.

A record is a flat dict (key -> value as written: numbers, strings, None) with its line number. Formats:
JSONL (one object per line: our trainer's --metrics-out, or a TRL/HF log history), CSV with a header (a
pandas export of the log history, or the dashboard's one-point-per-row export), or one JSON document (the
Hugging Face Trainer's trainer_state.json, its history under log_history; the dashboard's JSON exports).
Any of them may be gzipped (name ending in .gz) and may start with a UTF-8 byte order mark.

A file still being written ends in a half-written line: that last line is skipped with a note, while a
broken line anywhere before it refuses the file, naming the line and the format expected.
"""

from __future__ import annotations

import csv
import gzip
import io
import itertools
import json
import math
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

import orjson

_LONG_COLUMNS = {"step", "name", "value"}  # the dashboard's own exports, one point per row
_JSONL_EXAMPLE = '{"step": 12, "loss": 0.71}'


class MetricsFileError(ValueError):
    """The file is missing, empty or not a metrics log; the message names the problem."""


class Records:
    """Iterate (line number, record) over a metrics file; `notes` collects what was skipped and why."""

    def __init__(self, path: str | Path, notes: list[str]) -> None:
        self.path = Path(path)
        self.notes = notes
        self.unit = "line"  # what an error message counts: lines, or the records of a JSON document
        self.csv = False
        if not self.path.is_file():
            raise MetricsFileError(f"metrics file not found: {self.path}")

    def __iter__(self) -> Iterator[tuple[int, dict]]:
        try:
            with self._open() as fh:
                yield from self._records(fh)
        except (OSError, EOFError) as exc:  # a gzip file cut short or not gzip at all, or an unreadable file
            what = "not a readable gzip file" if self.path.suffix == ".gz" else "cannot be read"
            raise MetricsFileError(f"{self.path}: {what}: {exc}") from None

    def _open(self) -> IO[str]:
        # utf-8-sig drops a byte order mark (Excel and PowerShell write one); undecodable bytes become U+FFFD
        # so that one bad byte in a text column does not refuse the file.
        if self.path.suffix == ".gz":
            return gzip.open(self.path, "rt", encoding="utf-8-sig", errors="replace", newline="")
        return open(self.path, encoding="utf-8-sig", errors="replace", newline="")

    def _records(self, fh: IO[str]) -> Iterator[tuple[int, dict]]:
        found = next(((i, line) for i, line in enumerate(fh, start=1) if line.strip()), None)
        if found is None:
            raise MetricsFileError(f"metrics file is empty: {self.path}")
        lineno, first = found
        head = first.lstrip()
        if head.startswith("["):
            yield from self._document(first + fh.read(), lineno)
        elif head.startswith("{"):
            try:
                row = json.loads(first)  # NaN/Infinity literals are accepted, on purpose
            except json.JSONDecodeError:  # a pretty-printed document (trainer_state.json), or a broken first line
                rest = fh.read()
                try:
                    yield from self._document(first + rest, lineno)
                except _NotADocument:
                    yield from self._jsonl(itertools.chain([first], io.StringIO(rest)), lineno)
                return
            if isinstance(row, dict) and any(isinstance(row.get(k), list) for k in ("points", "log_history")):
                yield from self._document(first + fh.read(), lineno)  # a one-line export or trainer state
            else:
                yield from self._jsonl(itertools.chain([first], fh), lineno)
        else:
            yield from self._csv(itertools.chain([first], fh), lineno)

    # ----- JSONL -----
    def _jsonl(self, lines: Iterable[str], first_lineno: int) -> Iterator[tuple[int, dict]]:
        # orjson reads a line several times faster than json; it refuses the NaN/Infinity literals Python's
        # json writes (and integers beyond 64 bits), so a line it refuses is read again by json, which
        # decides what the line is, exactly as before.
        fast, fast_error = orjson.loads, orjson.JSONDecodeError
        loads, decode_error = json.loads, json.JSONDecodeError
        broken: tuple[int, str, json.JSONDecodeError] | None = None
        for lineno, line in enumerate(lines, start=first_lineno):
            try:
                row = fast(line)
            except fast_error:
                try:
                    row = loads(line)
                except decode_error as exc:
                    if not line.strip():
                        continue
                    if broken is not None:
                        raise self._bad_line(*broken) from None
                    broken = (lineno, line, exc)
                    continue
            if broken is not None:
                raise self._bad_line(*broken) from None
            if type(row) is not dict:
                raise MetricsFileError(f"{self.path}: line {lineno} is a JSON {type(row).__name__}, not an object; "
                                       f"expected one JSON object per line, e.g. {_JSONL_EXAMPLE}")
            yield lineno, row
        if broken is not None:
            last_lineno, last_line, error = broken
            if not _cut_short(last_line, error):
                raise self._bad_line(last_lineno, last_line, error)
            self.notes.append(f"line {last_lineno} (the last) is incomplete and was skipped: a file still being "
                              f"written? ({error.msg} at column {error.colno})")

    def _bad_line(self, lineno: int, line: str, exc: json.JSONDecodeError) -> MetricsFileError:
        return MetricsFileError(f"{self.path}: line {lineno} is not valid JSON ({exc.msg} at column {exc.colno}); "
                                f"expected one JSON object per line, e.g. {_JSONL_EXAMPLE}")

    # ----- one JSON document -----
    def _document(self, text: str, lineno: int) -> Iterator[tuple[int, dict]]:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            if text.lstrip().startswith("{"):
                raise _NotADocument from None  # read as JSONL instead, which names the broken line
            raise MetricsFileError(f"{self.path}: not valid JSON: {exc}") from None
        self.unit = "record"
        if isinstance(data, dict):
            # The dashboard's JSON export (points), the Hugging Face Trainer's trainer_state.json (log_history),
            # or a JSONL file of one record.
            if isinstance(data.get("points"), list):
                rows = _pivot(self.path, data["points"])
            else:
                rows = data.get("log_history", [data])
        elif data and all(isinstance(r, dict) and isinstance(r.get("points"), list) for r in data):
            # The runs list's export of several selected runs: one per-run export each.
            _one_run(self.path, [r.get("run", {}).get("id") for r in data])
            rows = _pivot(self.path, data[0]["points"])
        else:
            rows = data
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise MetricsFileError(f"{self.path}: expected one JSON object per line (or a list of objects)")
        yield from enumerate(rows, start=1)

    # ----- CSV -----
    def _csv(self, lines: Iterable[str], first_lineno: int) -> Iterator[tuple[int, dict]]:
        self.csv = True
        reader = csv.reader(lines)
        header = next(reader)
        if not any(k in header for k in ("step", "global_step")):
            raise MetricsFileError(f"{self.path}: not JSONL, and not a CSV with a 'step' or 'global_step' column "
                                   f"(header: {','.join(header)[:200]})")
        if _LONG_COLUMNS <= set(header):  # the dashboard's CSV export: an empty value was non-finite
            points: list[dict[str, str | None]] = [dict(zip(header, cells, strict=False)) for cells in reader]
            for point in points:
                point["value"] = point.get("value") or None
            if "run_id" in header:  # the runs list's export of several selected runs
                _one_run(self.path, list(dict.fromkeys(point["run_id"] for point in points)))
            self.csv, self.unit = False, "record"  # pivoted: values are numbers now
            yield from enumerate(_pivot(self.path, points), start=1)
            return
        width, short = len(header), None
        for cells in reader:
            lineno = first_lineno + reader.line_num - 1
            if short is not None:
                raise MetricsFileError(f"{self.path}: line {short[0]} has {short[1]} cells, the header has {width} "
                                       "columns; expected one row per step under the header")
            if len(cells) == width:
                yield lineno, dict(zip(header, cells, strict=True))
            elif cells:
                short = (lineno, len(cells))
        if short is not None:
            if short[1] > width:
                raise MetricsFileError(f"{self.path}: line {short[0]} has {short[1]} cells, the header has {width} "
                                       "columns; expected one row per step under the header")
            self.notes.append(f"line {short[0]} (the last) has {short[1]} of {width} cells and was skipped: "
                              "a file still being written?")


class _NotADocument(Exception):
    """The text starting with '{' is not one JSON document: read it as JSONL."""


def _cut_short(line: str, exc: json.JSONDecodeError) -> bool:
    """Whether a line fails to parse only because it stops early (the writer has not finished it)."""
    return exc.msg.startswith("Unterminated string") or exc.pos >= len(line.rstrip())


def _one_run(p: Path, run_ids: list) -> None:
    if len(run_ids) > 1:
        raise MetricsFileError(
            f"{p} holds {len(run_ids)} runs ({', '.join(map(str, run_ids))}); diagnose one run at a time: "
            "export it from its row in the runs list or from its run page"
        )


def _pivot(p: Path, points: list) -> list[dict]:
    """The dashboard's exports list one point per row (step, name, value): one row per step instead.
    A missing value is what the dashboard stores for NaN/Inf, so it becomes NaN, explicitly."""
    by_step: dict[int, dict] = {}
    for i, point in enumerate(points, start=1):
        if not isinstance(point, dict) or not _LONG_COLUMNS <= point.keys():
            raise MetricsFileError(f"{p}: point {i} is not an object with step, name and value")
        try:
            step, value = int(float(point["step"])), math.nan if point["value"] is None else float(point["value"])
        except (TypeError, ValueError):
            raise MetricsFileError(f"{p}: point {i} has a non-numeric step or value") from None
        by_step.setdefault(step, {"step": step})[str(point["name"])] = value
    return [by_step[s] for s in sorted(by_step)]
