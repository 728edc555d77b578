"""A run's metrics from a file, in step order, as compact arrays or as a stream for the alert engine.

What counts as a value (docs/metrics.md, "Reading other tools' files"):
- numbers are values; so are the NaN/Infinity literals Python's json writes.
- "NaN", "nan", "Infinity", "-Infinity", "inf" (as strings, or CSV cells), JSON null and empty CSV cells are
  non-finite values of a metric that has numbers (known metric names always do; an empty CSV cell needs a
  number in its column), so the non_finite alert sees them. A key that never holds a number (run names,
  dates) is ignored.
- null or an empty cell is "not logged" rather than NaN when the record logged only another group of
  metrics: an evaluation record (eval_/eval/ keys) leaves the training columns empty, and the reverse.
Names are mapped one key at a time (orpo_dash.metric_names.our_name). The one ambiguous key, a bare
`log_odds_ratio`, is TRL's (minus the OR loss) or ours (the log odds ratio): see log_odds_source().

Memory: records are read one at a time; load_metrics_file keeps one int64 and one float64 array per
metric, and MetricsStream (what `orpo-dash diagnose` feeds the alert engine) keeps only the current step.
A decision that needs the whole file (a null in a key not yet seen holding a number, or a log_odds_ratio
whose owner is not known yet) reads the rest of the file first, then reads on from that record again.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterator, Sequence
from itertools import repeat
from operator import itemgetter
from pathlib import Path
from typing import Any, overload

import numpy as np

from orpo_dash import metric_names as m
from orpo_dash.diagnostics.records import MetricsFileError, Records

_STEP_KEYS = ("step", "global_step")
NONFINITE_WORDS = frozenset({"nan", "+nan", "-nan", "inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"})
_NUMBER_TYPES = frozenset({float, int})
# Within a step, the metrics whose NaN the alert engine calls critical (engine._CORE) come first, so a step
# with several NaNs opens one critical alert whatever order the file wrote its keys in; the rest by name.
_CRITICAL_FIRST = (m.LOSS, m.NLL_LOSS, m.OR_LOSS, m.LOG_ODDS_RATIO, m.LOGPS_CHOSEN, m.LOGPS_REJECTED)
_NUMBER, _WORD, _NULL, _TEXT = range(4)  # a number; a non-finite word; null or an empty cell; other text


def reading_order(name: str) -> tuple[int, int, str]:
    """Sort key of a metric name within a step (the order the alert engine is fed)."""
    return (0, _CRITICAL_FIRST.index(name), "") if name in _CRITICAL_FIRST else (1, 0, name)


def _group(key: str) -> str | None:
    """Which records log a key: evaluation, test, the end-of-training summary, or training (None: all)."""
    if key.startswith((m.HF_EVAL_PREFIX, m.EVAL_PREFIX)):
        return "eval"
    if key.startswith("test_"):
        return "test"
    if key in m.HF_SUMMARY_KEYS:
        return "summary"
    return None if key == m.EPOCH else "train"


class _Blocked(Exception):
    """A record needs a decision only the rest of the file can make."""


class StepsOutOfOrder(Exception):
    """A record's step is lower than an earlier one (a resumed run): the stream cannot be in step order."""


class _Plan:
    """How to read records with one exact tuple of keys, all numbers (the common case, kept fast)."""

    __slots__ = ("step_key", "keys", "names", "get", "negate", "lor_at")

    def __init__(self, step_key: str, keys: list[str], names: list[str], negate: list[bool]) -> None:
        self.step_key, self.keys, self.names = step_key, tuple(keys), tuple(names)
        self.get = itemgetter(*keys) if len(keys) > 1 else (lambda row, k=keys[0]: (row[k],)) if keys else (
            lambda row: ())
        self.negate = [i for i, flag in enumerate(negate) if flag]
        self.lor_at = keys.index(m.AMBIGUOUS_LOG_ODDS) if m.AMBIGUOUS_LOG_ODDS in keys else None


class _Reader:
    """Records -> (step, names, values) per record, names mapped, values decided, in file order."""

    def __init__(self, path: str | Path, source: str | None, notes: list[str]) -> None:
        if source is not None and source not in m.SOURCES:
            raise ValueError(f"--source must be one of {', '.join(m.SOURCES)}, got {source!r}")
        self.path, self.given_source, self.notes = Path(path), source, notes
        self.records = Records(path, notes)
        self.lor_source: str | None = source
        self.numeric: set[str] = set()
        self.evidence: dict[str, list[str]] = {"trl": [], "ours": []}
        self.positive_lor: int | None = None  # the first step where a bare log_odds_ratio was > 0
        self.saw_lor = False
        self.final = False  # every decision made: nothing can block any more
        self.plans: dict[tuple[str, ...], _Plan] = {}

    @property
    def csv(self) -> bool:
        return self.records.csv  # CSV cells are all text: "0.5" is a number there, not in JSON

    def __iter__(self) -> Iterator[tuple[int, tuple[str, ...], Sequence[float]]]:
        blocked_at = None  # line (or record) numbers only grow, so they say where to read on from
        read = self._read
        for lineno, row in self.records:
            if blocked_at is None:
                try:
                    yield read(row, lineno)
                except _Blocked:
                    blocked_at = lineno
            else:
                self._survey(row, lineno)
        self._decide_at_end()
        if blocked_at is not None:  # read on from the blocked record, now that the whole file has spoken
            self.notes.append(f"read the file twice: {self.records.unit} {blocked_at} needed the rest of the "
                              "file to decide what its values are")
            for lineno, row in Records(self.path, []):
                if lineno >= blocked_at:
                    yield read(row, lineno)

    # ----- one record -----
    def _read(self, row: dict, lineno: int) -> tuple[int, tuple[str, ...], Sequence[float]]:
        plan = self.plans.get(tuple(row))
        if plan is not None:
            values = plan.get(row)
            if set(map(type, values)) <= _NUMBER_TYPES:
                step = row[plan.step_key]
                if type(step) is not int:
                    step = self._step(step, lineno)
                if plan.lor_at is not None and values[plan.lor_at] > 0:
                    self._positive(step)
                if plan.negate:
                    values = list(values)
                    for i in plan.negate:
                        values[i] = -values[i]
                return step, plan.names, values
        return self._read_slowly(row, lineno)

    def _read_slowly(self, row: dict, lineno: int) -> tuple[int, tuple[str, ...], Sequence[float]]:
        step_key, step, items, groups = self._survey(row, lineno)
        picked: dict[str, tuple[tuple, str, float]] = {}
        all_numbers = True
        for key, kind, value in items:
            if kind != _NUMBER:
                all_numbers = False
                if kind == _NULL and groups and _group(key) not in groups and _group(key) is not None:
                    continue  # an eval record's empty training columns (or the reverse): not logged
                if key not in self.numeric and (self.csv and kind == _NULL or key not in m.KNOWN_NAMES):
                    if not self.final:
                        raise _Blocked  # ...unless the key holds a number further down
                    continue  # a key that never holds a number: text, not a metric
            if key == m.AMBIGUOUS_LOG_ODDS and self.lor_source is None:
                if not self.final:
                    raise _Blocked
                raise MetricsFileError(self._ambiguity())
            name, negated = m.our_name(key, log_odds_source=self.lor_source)
            # Two keys for one metric (ours and TRL's): ours wins, whatever the order of the keys.
            rank = (key != name, key)
            if name not in picked or rank < picked[name][0]:
                picked[name] = (rank, key, -value if negated else value)
        names = sorted(picked, key=reading_order)
        if all_numbers and len(items) + sum(k in row for k in _STEP_KEYS) == len(row):
            keys = [picked[n][1] for n in names]
            self.plans[tuple(row)] = _Plan(step_key, keys, names,
                                           [m.our_name(k, log_odds_source=self.lor_source)[1] for k in keys])
        return step, tuple(names), [picked[n][2] for n in names]

    def _survey(self, row: dict, lineno: int) -> tuple[str, int, list[tuple[str, int, float]], set[str | None]]:
        """Classify a record's values and learn from them (which keys hold numbers, whose names they are)."""
        step_key = next((k for k in _STEP_KEYS if row.get(k) not in (None, "")), None)
        if step_key is None:
            raise MetricsFileError(f"{self.path}: {self.records.unit} {lineno} has no 'step' or 'global_step'")
        step = self._step(row[step_key], lineno)
        items: list[tuple[str, int, float]] = []
        groups: set[str | None] = set()
        for key, raw in row.items():
            if key in _STEP_KEYS or key is None:
                continue
            kind, value = _classify(raw, csv=self.csv)
            if kind == _TEXT:
                continue
            if kind == _NUMBER:
                if key not in self.numeric:
                    self._holds_numbers(key)
                if key == m.AMBIGUOUS_LOG_ODDS and value > 0:
                    self._positive(step)
            if kind == _NUMBER or kind == _WORD and (key in self.numeric or key in m.KNOWN_NAMES):
                groups.add(_group(key))  # what this record logged (a "nan" in a text column says nothing)
            items.append((key, kind, value))
        if m.AMBIGUOUS_LOG_ODDS in row and not self.saw_lor:
            self.saw_lor = True
            self._decide()
        groups.discard(None)
        return step_key, step, items, groups

    def _step(self, raw: Any, lineno: int) -> int:
        try:
            step = float(raw)
            if not math.isfinite(step) or isinstance(raw, bool):
                raise ValueError
        except (TypeError, ValueError):
            raise MetricsFileError(f"{self.path}: {self.records.unit} {lineno} has a non-numeric step {raw!r}") from None
        return int(step)

    # ----- whose log_odds_ratio -----
    def _holds_numbers(self, key: str) -> None:
        self.numeric.add(key)
        naming = m.naming(key)
        if naming is not None:
            self.evidence[naming].append(key)
            self._decide()

    def _positive(self, step: int) -> None:
        if self.positive_lor is None:
            self.positive_lor = step
            self._decide()

    def _decide(self) -> None:
        """Decide (or re-check) whose log_odds_ratio this is, from its values' sign and the other keys."""
        if self.given_source is not None or not self.saw_lor:
            return
        trl, ours = self.evidence["trl"], self.evidence["ours"]
        if trl and (ours or self.positive_lor is not None):
            raise MetricsFileError(self._ambiguity())
        verdict = "ours" if ours or self.positive_lor is not None else "trl" if trl else None
        if self.lor_source is not None and verdict != self.lor_source:
            raise MetricsFileError(self._ambiguity())
        self.lor_source = verdict

    def _decide_at_end(self) -> None:
        self.final = True
        if self.saw_lor and self.lor_source is None and self.given_source is None:
            raise MetricsFileError(self._ambiguity())

    def _ambiguity(self) -> str:
        trl, ours = self.evidence["trl"], self.evidence["ours"]
        found = []
        if self.positive_lor is not None:
            found.append(f"it is > 0 at step {self.positive_lor} (ours can be, TRL's never is)")
        else:
            found.append("every value is <= 0 (TRL's always is, ours can be early in a run or when it fails)")
        found.append(f"TRL/Hugging Face names: {', '.join(trl[:3])}" if trl else "no TRL/Hugging Face names")
        found.append(f"names of ours: {', '.join(ours[:3])}" if ours else "no names of ours")
        return (f"{self.path}: cannot tell whose 'log_odds_ratio' this is: TRL's ORPOTrainer logs minus the OR loss "
                f"under that name, our trainer the log odds ratio ({'; '.join(found)}). "
                "Pass --source trl or --source ours.")


def _classify(raw: Any, *, csv: bool) -> tuple[int, float]:
    kind = type(raw)
    if kind is float or kind is int:
        return _NUMBER, raw
    if kind is str:
        word = raw.strip()
        if not word:
            return _NULL, math.nan
        if word.lower() in NONFINITE_WORDS:
            return _WORD, float(word)
        if csv:
            try:
                value = float(word)
            except ValueError:
                return _TEXT, 0.0
            return _NUMBER, value
        return _TEXT, 0.0
    if raw is None:
        return _NULL, math.nan
    return _TEXT, 0.0  # bools, lists, objects


class MetricsStream:
    """The metrics of a file one step at a time, in step order: (step, names, values), names in reading_order.

    One value per (step, metric): the last one logged. Raises StepsOutOfOrder when a record goes back to
    an earlier step (a resumed run); load_metrics_file() handles those. `steps` counts the steps read
    so far, `notes` says what was skipped and why.
    """

    def __init__(self, path: str | Path, *, source: str | None = None) -> None:
        self.notes: list[str] = []
        self.steps = 0
        self.last_step: int | None = None
        self._reader = _Reader(path, source, self.notes)

    def __iter__(self) -> Iterator[tuple[int, tuple[str, ...], Sequence[float]]]:
        current: int | None = None
        chunks: list[tuple[tuple[str, ...], Sequence[float]]] = []
        for step, names, values in self._reader:
            if step != current:
                if current is not None:
                    if step < current:
                        raise StepsOutOfOrder(f"step {step} after step {current}")
                    yield (current, *chunks[0]) if len(chunks) == 1 else _merged(current, chunks)
                    self.steps += 1
                current, chunks = step, [(names, values)]
            else:
                chunks.append((names, values))
        if current is not None:
            yield _merged(current, chunks)
            self.steps += 1
            self.last_step = current

    def points(self) -> Iterator[tuple[int, str, float]]:
        """The same, one (step, name, value) at a time: what AlertEngine.feed takes."""
        for step, names, values in self:
            yield from zip(repeat(step), names, values)  # noqa: B905 (repeat() is endless on purpose)


def _merged(step: int, chunks: list[tuple[tuple[str, ...], Sequence[float]]]
            ) -> tuple[int, tuple[str, ...], Sequence[float]]:
    if len(chunks) == 1:
        return step, chunks[0][0], chunks[0][1]
    merged: dict[str, float] = {}
    for names, values in chunks:  # a training and an evaluation record of one step; a repeat: the last wins
        merged.update(zip(names, values, strict=True))
    names = tuple(sorted(merged, key=reading_order))
    return step, names, [merged[n] for n in names]


class MetricSeries(Sequence[tuple[int, float]]):
    """One metric's points as two arrays (int64 steps, float64 values), read like a list of (step, value)."""

    __slots__ = ("steps", "values")

    def __init__(self, steps: np.ndarray, values: np.ndarray) -> None:
        self.steps, self.values = steps, values

    def __len__(self) -> int:
        return len(self.steps)

    @overload
    def __getitem__(self, i: int) -> tuple[int, float]: ...
    @overload
    def __getitem__(self, i: slice) -> list[tuple[int, float]]: ...

    def __getitem__(self, i: int | slice) -> tuple[int, float] | list[tuple[int, float]]:
        if isinstance(i, slice):
            return list(zip(self.steps[i].tolist(), self.values[i].tolist(), strict=True))
        return int(self.steps[i]), float(self.values[i])

    def __iter__(self) -> Iterator[tuple[int, float]]:
        return zip(self.steps.tolist(), self.values.tolist(), strict=True)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, MetricSeries):
            other = list(other)
        return isinstance(other, (list, tuple)) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"MetricSeries({list(self)!r})" if len(self) <= 6 else f"MetricSeries(<{len(self)} points>)"


def load_metrics_file(path: str | Path, *, source: str | None = None, notes: list[str] | None = None
                      ) -> dict[str, MetricSeries]:
    """Series per metric name (in reading_order), each sorted by step with one value per step (the last wins).

    `source` ("trl" or "ours") says whose a bare log_odds_ratio is when the file cannot tell; `notes`, if
    given, receives what was skipped and why. Raises MetricsFileError naming the problem.
    """
    notes = [] if notes is None else notes
    columns: dict[str, tuple[array, array]] = {}
    for step, names, values in _Reader(path, source, notes):
        for name, value in zip(names, values, strict=True):
            col = columns.get(name)
            if col is None:
                col = columns[name] = (array("q"), array("d"))
            col[0].append(step)
            col[1].append(value)
    if not columns:
        raise MetricsFileError(f"{path}: no numeric metrics found")
    return {name: _sorted_series(*columns[name]) for name in sorted(columns, key=reading_order)}


def _sorted_series(steps_in: array, values_in: array) -> MetricSeries:
    steps = np.frombuffer(steps_in, dtype=np.int64)
    values = np.frombuffer(values_in, dtype=np.float64)
    if len(steps) > 1 and not bool(np.all(steps[1:] > steps[:-1])):
        order = np.argsort(steps, kind="stable")
        steps, values = steps[order], values[order]
        last = np.append(steps[1:] != steps[:-1], True)  # the last logged value of each step wins
        steps, values = steps[last], values[last]
    return MetricSeries(steps, values)
