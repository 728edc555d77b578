"""Min/max summaries of each metric series at a few bucket widths, so a chart of a million-step run
reads about a thousand summary rows per metric instead of a million points.

Level 0 buckets cover BUCKET_WIDTH steps; each level above is FANOUT times wider and is built from
the level below. A bucket is *sealed* (summarised) once a point beyond it arrives; a late point inside
a sealed bucket (a resumed run re-logging steps) re-summarises it and its parents. The open bucket at
the end of a series is always read raw, so live charts lose nothing.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Sequence
from itertools import islice
from operator import itemgetter, le
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from orpo_dash.protocol import Point
from server.models import MetricRollup

BUCKET_WIDTH = 64
FANOUT = 16
LEVELS = 3  # widths 64, 1,024 and 16,384 steps
SUMMARY_COLUMNS = "bucket, min_step, min_value, min_time, max_step, max_value, max_time, nan_step, nan_time"

PointRow = tuple[int, float | None, float]


def width(level: int) -> int:
    return BUCKET_WIDTH * FANOUT**level


class RollupTracker:
    """Remembers, per (run, name), how many level-0 buckets are sealed (rebuilt from the DB on first use),
    and, once known, the stored rows past them, so that a streaming batch is summarised from memory."""

    def __init__(self) -> None:
        self._sealed_below: dict[tuple[int, str], int] = {}
        # Per (run, name): every stored row (step, value or None, time) at or after the first unsealed
        # step, in step order. Present only while that is known for sure (see update()).
        self._open_rows: dict[tuple[int, str], list[PointRow]] = {}

    def forget(self, run_id: int) -> None:
        for known in (self._sealed_below, self._open_rows):
            for key in [key for key in known if key[0] == run_id]:
                del known[key]

    def update(self, *, session: Session, run_id: int, points: Sequence[Point], all_stored: bool = False) -> None:
        """Call after inserting `points` in the same transaction.

        all_stored: insert_points stored every one of them (none was ignored as already stored). Then a
        series whose stored rows past its last sealed bucket are known, and whose points in this batch all
        come after them, is summarised from those rows and the batch in memory: the rows are exactly what
        reading them back would give. Anything else (a resumed run re-logging steps, a batch out of step
        order, the first batch after a restart) reads the table, as before.
        """
        steps, names = list(map(itemgetter(0), points)), list(map(itemgetter(1), points))
        low, high, in_order = _step_range_per_name(steps, names)
        in_memory = _rows_by_name(points, names) if all_stored and in_order else None
        summaries: list[tuple[Any, ...]] = []
        dirty: list[tuple[str, int, int]] = []
        for name, max_step in high.items():
            key = (run_id, name)
            sealed_below = self._sealed_below.get(key)
            if sealed_below is None:
                sealed_below = self._load(session, run_id, name)
            first_dirty = min(sealed_below, low[name] // BUCKET_WIDTH)
            new_sealed_below = max(sealed_below, max_step // BUCKET_WIDTH)  # the bucket holding max_step stays open
            open_rows = self._open_rows.pop(key, None)
            end_step = new_sealed_below * BUCKET_WIDTH
            if (in_memory is not None and open_rows is not None and first_dirty == sealed_below
                    and (not open_rows or open_rows[-1][0] < low[name])):
                rows = open_rows + in_memory[name]
                cut = bisect_left(rows, end_step, key=_step_of)
                summaries.extend((run_id, name, 0, *summary) for summary in _summarise_points(rows[:cut]))
                self._open_rows[key] = rows[cut:]
            else:
                if first_dirty < new_sealed_below:
                    _summarise(session, run_id, name, first_dirty, new_sealed_below)
                if in_memory is not None:
                    # Known from here on: the next batch of this series can be summarised in memory.
                    self._open_rows[key] = fetch_rows(session, OPEN_ROWS_SQL, (run_id, name, end_step))  # type: ignore[assignment]
            dirty.append((name, first_dirty, new_sealed_below))
            self._sealed_below[key] = new_sealed_below
        # Level 0 of every series in one statement; the coarser levels are built from it.
        _write_summaries(session, summaries)
        _summarise_upper_levels(session, run_id, dirty)

    def write_new_series(self, *, session: Session, run_id: int, name: str, points: Sequence[Point]) -> None:
        """Summaries of a series just stored whole, in step order (an import): level 0 straight from the
        points in memory rather than read back from the table (that read was a third of an import's time),
        the levels above from level 0 as update() builds them. The last bucket stays open, as in update()."""
        if not points:
            return
        sealed_below = points[-1][0] // BUCKET_WIDTH
        end = bisect_left(points, sealed_below * BUCKET_WIDTH, key=itemgetter(0))
        rows = [(step, value if math.isfinite(value) else None, when) for step, _, value, when in islice(points, end)]
        _write_summaries(session, [(run_id, name, 0, *summary) for summary in _summarise_points(rows)])
        _summarise_upper_levels(session, run_id, [(name, 0, sealed_below)])
        self._sealed_below[(run_id, name)] = sealed_below
        self._open_rows.pop((run_id, name), None)

    @staticmethod
    def _load(session: Session, run_id: int, name: str) -> int:
        top = session.scalar(
            select(func.max(MetricRollup.bucket))
            .where(MetricRollup.run_id == run_id, MetricRollup.name == name, MetricRollup.level == 0)
        )
        return 0 if top is None else top + 1


OPEN_ROWS_SQL = "SELECT step, value, time FROM metric_points WHERE run_id = ? AND name = ? AND step >= ? ORDER BY step"
_step_of = itemgetter(0)
_step_value_time = itemgetter(0, 2, 3)


def _rows_by_name(points: Sequence[Point], names: list[str]) -> dict[str, list[PointRow]]:
    """The batch's (step, value, time) rows per metric, each in the batch's order, as the table returns
    them (a non-finite value is None). `names` is the points' names, in order."""
    all_finite = all(map(math.isfinite, map(itemgetter(2), points)))
    period = _name_period(names)
    if period and all_finite:
        # Every step logs the same metrics in the same order (a worker's batch): metric i's rows are
        # every period-th point from i, sliced and cut at C speed.
        return {name: list(map(_step_value_time, islice(points, i, None, period))) for i, name in enumerate(names[:period])}
    by_name: dict[str, list[PointRow]] = {name: [] for name in dict.fromkeys(names)}
    if all_finite:
        rows: Iterable[PointRow] = map(_step_value_time, points)
    else:
        rows = [(step, value if math.isfinite(value) else None, when) for step, _, value, when in points]
    # Each row appended to its metric's list by map() and a zero-length deque: no Python frame per point.
    deque(map(list.append, map(by_name.__getitem__, names), rows), maxlen=0)
    return by_name


def _name_period(names: list[str]) -> int | None:
    """k when the names repeat the same k distinct names in the same order throughout (the last round
    may stop short), else None. Two list comparisons in C."""
    if not names:
        return None
    try:
        period = names.index(names[0], 1)
    except ValueError:
        period = len(names)
    head = names[:period]
    if len(set(head)) != period or names[period:] != names[:-period]:
        return None
    return period


def _step_range_per_name(steps: list[int], names: list[str]) -> tuple[dict[str, int], dict[str, int], bool]:
    """Each metric's lowest and highest step in the batch, and whether the batch is in step order."""
    if all(map(le, steps, islice(steps, 1, None))):
        # A batch in step order (what a worker sends): a metric's first point has its lowest step and its
        # last the highest, found by dict() at C speed instead of comparisons per point in Python.
        return dict(zip(reversed(names), reversed(steps), strict=True)), dict(zip(names, steps, strict=True)), True
    low: dict[str, int] = {}
    high: dict[str, int] = {}
    for step, name in zip(steps, names, strict=True):
        lowest = low.get(name)
        if lowest is None:
            low[name] = high[name] = step
        elif step < lowest:
            low[name] = step
        elif step > high[name]:
            high[name] = step
    return low, high, False


def _summarise(session: Session, run_id: int, name: str, first_bucket: int, end_bucket: int) -> None:
    """(Re)write the series' level-0 summaries for buckets [first_bucket, end_bucket), from its points."""
    rows = fetch_rows(
        session, "SELECT step, value, time FROM metric_points WHERE run_id = ? AND name = ? AND step >= ? AND step < ? ORDER BY step",
        (run_id, name, first_bucket * BUCKET_WIDTH, end_bucket * BUCKET_WIDTH),
    )
    _write_summaries(session, [(run_id, name, 0, *summary) for summary in _summarise_points(rows)])


def _summarise_upper_levels(session: Session, run_id: int, dirty: Sequence[tuple[str, int, int]]) -> None:
    """(Re)write levels 1.. for the series of a batch, each over its (name, first dirty, end) level-0 buckets.

    Per level, one read of the level below for all series with the same span (nearly always all of them)
    and one write: a statement per series and level was a PostgreSQL round trip each, 30 of them every
    third batch of a 15-metric run."""
    for level in range(1, LEVELS):
        scale = FANOUT**level
        names_by_span: dict[tuple[int, int], list[str]] = defaultdict(list)
        for name, first_dirty, new_sealed_below in dirty:
            start, end = first_dirty // scale, new_sealed_below // scale
            if start < end:
                names_by_span[(start, end)].append(name)
        if not names_by_span:
            return  # a coarser level seals no bucket the finer one did not
        values = []
        for (start, end), names in names_by_span.items():
            children = fetch_rows(
                session,
                f"SELECT name, {SUMMARY_COLUMNS} FROM metric_rollups WHERE run_id = ? AND level = ? "
                f"AND name IN ({', '.join(['?'] * len(names))}) AND bucket >= ? AND bucket < ? ORDER BY name, bucket",
                (run_id, level - 1, *names, start * FANOUT, end * FANOUT),
            )
            groups: dict[tuple[str, int], list[tuple]] = defaultdict(list)
            for child in children:
                groups[(child[0], child[1] // FANOUT)].append(child[1:])
            for (name, bucket), members in groups.items():
                low, high, nan = _extremes(members)
                values.append((run_id, name, level, bucket, *(low or (None, None, None)), *(high or (None, None, None)),
                               *(nan[0::2] if nan else (None, None))))
        _write_summaries(session, values)


def _write_summaries(session: Session, values: list[tuple]) -> None:
    """Insert or replace summary rows (run_id, name, level, bucket, min..., max..., nan...)."""
    if not values:
        return
    connection = session.connection()
    names = ("min_step", "min_value", "min_time", "max_step", "max_value", "max_time", "nan_step", "nan_time")
    columns = "run_id, name, level, bucket, " + ", ".join(names)
    if connection.dialect.name == "postgresql":
        updates = ", ".join(f"{column} = EXCLUDED.{column}" for column in names)
        conflict = f"ON CONFLICT (run_id, name, level, bucket) DO UPDATE SET {updates}"
        if len({row[:4] for row in values}) == len(values):
            # One statement for the whole list, its columns as arrays: psycopg's executemany sends a
            # statement per row, several times the cost at a batch's ~100 summaries. (A key twice in one
            # statement is an error for ON CONFLICT DO UPDATE, hence only for distinct keys.)
            connection.exec_driver_sql(
                f"INSERT INTO metric_rollups ({columns}) SELECT * FROM unnest({ROLLUP_ARRAYS}) {conflict}",
                tuple(list(column) for column in zip(*values, strict=True)),
            )
            return
        placeholders = ", ".join(["%s"] * 12)
        sql = f"INSERT INTO metric_rollups ({columns}) VALUES ({placeholders}) {conflict}"
    else:
        placeholders = ", ".join(["?"] * 12)
        sql = f"INSERT OR REPLACE INTO metric_rollups ({columns}) VALUES ({placeholders})"
    connection.exec_driver_sql(sql, values)


ROLLUP_ARRAYS = ", ".join(f"%b::{kind}[]" for kind in (
    "int4", "text", "int4", "int4", "int4", "float8", "float8", "int4", "float8", "float8", "int4", "float8"))


def _summarise_points(rows: Sequence[tuple]) -> list[tuple]:
    """Level-0 summaries (bucket, min step/value/time, max step/value/time, nan step/time) of raw
    (step, value, time) rows in step order; the same choices as _extremes (first minimum, first
    maximum, first NaN), in one pass without building a summary-shaped row per point (ingestion's hot loop)."""
    out: list[tuple] = []
    bucket = -1
    low = high = nan = None
    for step, value, when in rows:
        if step // BUCKET_WIDTH != bucket:
            if bucket >= 0:
                out.append((bucket, *(low or (None, None, None)), *(high or (None, None, None)), *(nan or (None, None))))
            bucket = step // BUCKET_WIDTH
            low = high = nan = None
        if value is None:
            if nan is None:
                nan = (step, when)
            continue
        if low is None or value < low[1]:
            low = (step, value, when)
        if high is None or value > high[1]:
            high = (step, value, when)
    if bucket >= 0:
        out.append((bucket, *(low or (None, None, None)), *(high or (None, None, None)), *(nan or (None, None))))
    return out


def _extremes(rows: Sequence[tuple]) -> tuple[PointRow | None, PointRow | None, PointRow | None]:
    """Minimum, maximum and first NaN over summary-shaped rows (bucket, min…, max…, nan_step, nan_time)."""
    low = high = nan = None
    for _bucket, lo_step, lo, lo_time, hi_step, hi, hi_time, nan_step, nan_time in rows:
        if lo_step is not None and lo is not None and (low is None or lo < low[1]):
            low = (lo_step, lo, lo_time)
        if hi_step is not None and hi is not None and (high is None or hi > high[1]):
            high = (hi_step, hi, hi_time)
        if nan_step is not None and nan is None:
            nan = (nan_step, None, nan_time)
    return low, high, nan


def _read_level(
    session: Session, run_id: int, name: str, level: int, first_bucket: int, end_bucket: int
) -> list[tuple[Any, ...]]:
    # Straight to the driver: these reads are the whole cost of drawing a long run's chart.
    return fetch_rows(
        session,
        f"SELECT {SUMMARY_COLUMNS} FROM metric_rollups WHERE run_id = ? AND name = ? AND level = ? "
        "AND bucket >= ? AND bucket < ? ORDER BY bucket",
        (run_id, name, level, first_bucket, end_bucket),
    )


def summary_points(
    *, session: Session, run_id: int, name: str, low: int, high: int, level: int,
    raw: Callable[[int, int], list[PointRow]], group: int = 1,
) -> list[PointRow]:
    """Points standing for [low, high]: whole buckets of `level` from their summaries (min, max, NaN each),
    the ragged edges from finer levels, and finally raw points (`raw(low, high)`).

    group > 1 merges that many consecutive buckets of `level` into one (their minimum, maximum and first
    NaN) while reading them: a chart asking for fewer points than the level has buckets gets them in
    this one pass, instead of every bucket's points and then a downsampling pass over them."""
    if high < low:
        return []
    if level < 0:
        return raw(low, high)
    size = width(level)
    first_bucket, end_bucket = -(-low // size), (high + 1) // size
    rows = _read_level(session, run_id, name, level, first_bucket, end_bucket) if first_bucket < end_bucket else []
    if not rows:
        return summary_points(session=session, run_id=run_id, name=name, low=low, high=high, level=level - 1, raw=raw)
    first_covered, end_covered = rows[0][0] * size, (rows[-1][0] + 1) * size
    points = summary_points(session=session, run_id=run_id, name=name, low=low, high=first_covered - 1, level=level - 1, raw=raw)
    append = points.append
    if group > 1:
        _append_grouped(rows, group, append)
        rows = []
    # Each bucket stands for its minimum, maximum and first NaN, in step order. This loop runs for
    # every bucket of every chart of a long run, so it stays a plain loop.
    for _bucket, lo_step, lo, lo_time, hi_step, hi, hi_time, nan_step, nan_time in rows:
        kept = []
        if lo_step is not None:
            kept.append((lo_step, lo, lo_time))
        if hi_step is not None and hi_step != lo_step:
            kept.append((hi_step, hi, hi_time))
        if nan_step is not None:
            kept.append((nan_step, None, nan_time))
        if len(kept) > 1:
            kept.sort()
        for point in kept:
            append(point)
    points.extend(summary_points(session=session, run_id=run_id, name=name, low=end_covered, high=high, level=level - 1, raw=raw))
    return points


def _append_grouped(rows: Sequence[tuple], group: int, append: Callable[[PointRow], None]) -> None:
    """Per run of `group` consecutive buckets (by bucket // group): its minimum, maximum and first NaN,
    in step order, with the same choices as _extremes (the first of equal minima or maxima).

    The run page's first request at 50k-130k steps goes through here for every level-0 bucket of every
    metric: the extremes are kept as the rows holding them (no tuple built per bucket), and a group with
    a distinct minimum and maximum and no NaN (nearly all) is appended without a sort."""
    current = None
    low = high = nan = None
    low_value = high_value = 0.0
    for row in rows:
        key = row[0] // group
        if key != current:
            if current is not None:
                _append_group(low, high, nan, append)
            current, low, high, nan = key, None, None, None
        # Stored values are finite or NULL (NaN and ±inf are stored as NULL).
        value = row[2]
        if value is not None and row[1] is not None and (low is None or value < low_value):
            low, low_value = row, value
        value = row[5]
        if value is not None and row[4] is not None and (high is None or value > high_value):
            high, high_value = row, value
        if nan is None and row[7] is not None:
            nan = row
    if current is not None:
        _append_group(low, high, nan, append)


def _append_group(low: tuple | None, high: tuple | None, nan: tuple | None, append: Callable[[PointRow], None]) -> None:
    """A group's extremes, given as the summary rows holding them, appended as _append_extremes does."""
    if nan is None and low is not None and high is not None:
        if low[1] < high[4]:
            append((low[1], low[2], low[3]))
            append((high[4], high[5], high[6]))
        elif low[1] > high[4]:
            append((high[4], high[5], high[6]))
            append((low[1], low[2], low[3]))
        else:
            append((low[1], low[2], low[3]))
        return
    _append_extremes(None if low is None else (low[1], low[2], low[3]), None if high is None else (high[4], high[5], high[6]),
                     None if nan is None else (nan[7], None, nan[8]), append)


def _append_extremes(low: PointRow | None, high: PointRow | None, nan: PointRow | None,
                     append: Callable[[PointRow], None]) -> None:
    kept = [point for point in (low, high, nan) if point is not None]
    if low is not None and high is not None and high[0] == low[0]:
        kept.remove(high)
    kept.sort()
    for point in kept:
        append(point)


def fetch_rows(session: Session, sql: str, parameters: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    """The rows of a read through the driver's own cursor, as plain tuples: chart reads fetch tens of
    thousands of rows, and wrapping each in SQLAlchemy's Row cost about as much as fetching it.
    `sql` uses ? placeholders (turned into %s for PostgreSQL)."""
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        sql = sql.replace("?", "%s")
    cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(sql, parameters)
        return cursor.fetchall()  # type: ignore[no-any-return]
    finally:
        cursor.close()
