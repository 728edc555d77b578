"""Metric series: storage of points and min/max-preserving downsampled reads."""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from operator import itemgetter

from sqlalchemy import Connection
from sqlalchemy.orm import Session

from orpo_dash.protocol import Point
from server.models import Run
from server.schemas import Series
from server.services.rollups import LEVELS, fetch_rows, summary_points, width


def insert_points(*, session: Session, run_id: int, points: Sequence[Point]) -> bool:
    """Insert points, ignoring any (run, name, step) already stored: a resend never duplicates; within a
    batch the first of two points with the same (name, step) wins. Non-finite values are stored as NULL
    (JSON has no NaN/Inf). True when every point was stored (none was ignored): the rollups may then
    be computed from the points in memory (RollupTracker.update's all_stored).

    Goes straight to the driver with the points as they are (no row built per point in Python): the
    ORM's bookkeeping, and then even building rows, cost more than the database at the rates a busy
    run produces. SQLite gets one executemany (the run id is inlined, a trusted integer); PostgreSQL a
    binary COPY (benchmarks/ingest_throughput.py).
    """
    if not points:
        return True
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        return _insert_points_postgres(connection, int(run_id), points) == len(points)
    # SQLite stores a NaN as NULL itself, but not ±inf.
    rows = _non_finite_as_none(points) if any(map(math.isinf, map(_value_of, points))) else list(points)
    result = connection.exec_driver_sql(
        f"INSERT OR IGNORE INTO metric_points (run_id, step, name, value, time) VALUES ({int(run_id)}, ?, ?, ?, ?)", rows
    )
    # sqlite3 sums an executemany's changes: an ignored point adds none.
    return bool(result.rowcount == len(points))


def _value_of(point: Point) -> float:
    return point[2]


def _non_finite_as_none(points: Sequence[Point]) -> list[tuple[int, str, float | None, float]]:
    return [(step, name, value if math.isfinite(value) else None, when) for step, name, value, when in points]


def _insert_points_postgres(connection: Connection, run_id: int, points: Sequence[Point]) -> int:
    """COPY the batch straight into the table; only if that meets a point already stored (a resumed run
    logging its steps again) or a (name, step) twice in the batch, redo it as INSERT ... ON CONFLICT
    DO NOTHING, which costs several times more per row (the speculative insert into the index).
    Returns how many points were stored."""
    import psycopg  # here, not at the top: a dashboard on SQLite never loads the PostgreSQL driver

    rows = points if all(map(math.isfinite, map(_value_of, points))) else _non_finite_as_none(points)
    cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
    cursor.execute("SAVEPOINT metric_points_copy")
    try:
        with cursor.copy("COPY metric_points (step, name, value, time, run_id) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["int4", "text", "float8", "float8", "int4"])
            for row in rows:
                copy.write_row((*row, run_id))
    except psycopg.errors.UniqueViolation:
        cursor.execute("ROLLBACK TO SAVEPOINT metric_points_copy")
        cursor.execute("RELEASE SAVEPOINT metric_points_copy")
        return _insert_ignoring_duplicates_postgres(connection, run_id, rows)
    cursor.execute("RELEASE SAVEPOINT metric_points_copy")
    return len(rows)


def _insert_ignoring_duplicates_postgres(
    connection: Connection, run_id: int, rows: Sequence[tuple[int, str, float | None, float]]
) -> int:
    steps, names, values, times = (list(column) for column in zip(*rows, strict=True))
    # WITH ORDINALITY + ORDER BY keeps the batch's order, so "first wins" on a duplicate holds.
    result = connection.exec_driver_sql(
        "INSERT INTO metric_points (run_id, name, step, value, time) "
        "SELECT %s, name, step, value, time FROM unnest(%b::text[], %b::int4[], %b::float8[], %b::float8[]) "
        "WITH ORDINALITY AS batch(name, step, value, time, position) ORDER BY position "
        "ON CONFLICT (run_id, name, step) DO NOTHING",
        (run_id, names, steps, values, times),
    )
    return int(result.rowcount)


def points_after_each(
    *, session: Session, run_id: int, names: Sequence[str], after: Mapping[str, int] | None = None, default_after: int = -1
) -> Iterator[tuple[int, str, float | None, float]]:
    """(step, name, value, time) of the named series after each one's own step (`after[name]`, else
    default_after), in step order, names in the order given within a step; NaN is None (as stored).

    One index range scan per series, merged here: a single query over the run ordered by step made the
    database sort every point of the run (a temporary B-tree: 1.5 s per browser reconnect at 1M steps).
    Streams from server-side cursors, so memory does not grow with the run.
    """
    after = after or {}
    connection = session.connection()
    # Per statement: Connection.execution_options() would change the session's connection for good.
    streaming = {"stream_results": True, "yield_per": PAGE_ROWS}
    mark = "%s" if connection.dialect.name == "postgresql" else "?"

    def series(name: str) -> Iterator[tuple[int, str, float | None, float]]:
        rows = connection.exec_driver_sql(
            SERIES_AFTER_SQL.replace("?", mark), (run_id, name, after.get(name, default_after)), execution_options=streaming
        )
        for step, value, when in rows:
            yield step, name, value, when

    return heapq.merge(*(series(name) for name in names), key=itemgetter(0))


# Served by the primary key (run_id, name, step) alone: no sort (tests/server/test_alert_engine_restore.py).
SERIES_AFTER_SQL = "SELECT step, value, time FROM metric_points WHERE run_id = ? AND name = ? AND step > ? ORDER BY step"


def metric_names(*, session: Session, run_id: int) -> list[str]:
    # Ingestion keeps every metric's latest value on the run row: no scan over millions of points.
    run = session.get(Run, run_id)
    return sorted(run.latest_metrics or {}) if run is not None else []


def read_series(
    *,
    session: Session,
    run_id: int,
    names: Iterable[str],
    max_points: int,
    min_step: int | None = None,
    max_step: int | None = None,
) -> tuple[dict[str, Series], bool]:
    """Each named series within [min_step, max_step], downsampled to about max_points if longer."""
    result: dict[str, Series] = {}
    downsampled = False
    low = min_step if min_step is not None else 0
    high = max_step if max_step is not None else MAX_STEP
    for name in names:
        rows, was_downsampled = _read_one(session, run_id, name, low, high, max_points)
        downsampled = downsampled or was_downsampled
        # Columns straight from the database's typed rows: validating ~40,000 numbers per page load
        # through pydantic cost more than reading them.
        result[name] = Series.model_construct(step=list(map(_step_of, rows)), value=list(map(_value_in, rows)),
                                              time=list(map(_time_in, rows)))
    return result, downsampled


MAX_STEP = 2**31 - 1  # steps are 32-bit integers in the schema
# Rows fetched per round trip when streaming a series.
PAGE_ROWS = 5000


def _read_one(session: Session, run_id: int, name: str, low: int, high: int, max_points: int) -> tuple[list[Row], bool]:
    # The series' last step, one seek in the primary key; through the driver, as every read here.
    last = fetch_rows(session, "SELECT max(step) FROM metric_points WHERE run_id = ? AND name = ? AND step <= ?",
                      (run_id, name, high))[0][0]
    if last is None or last < low:
        return [], False
    high = last
    if high - low + 1 <= max_points:
        return _raw(session, run_id, name, low, high), False  # every point fits: full resolution
    # One path for every run size: the finest summary level whose buckets fit in max_points (each bucket
    # stands for its minimum, maximum and first NaN), ragged edges from finer levels and raw points, then
    # a trim to max_points that keeps every extreme. Reading raw rows here instead cost ~0.4 s for a 10k-step
    # run's 14 metrics (every row through Python), more than a million-step run's summaries.
    span = high - low + 1
    level = next((lv for lv in range(LEVELS) if span / width(lv) <= max_points), LEVELS - 1)
    # Up to max_points buckets stand for up to twice as many points (minimum and maximum). When that is
    # more than GROUPED_SHARE of max_points, merge neighbours while reading so that the whole buckets
    # fill at most that share, leaving the rest for the ragged edges (at most ~250 points): the trim
    # below then has nothing left to do, where it used to go over every bucket's points again. Not in
    # a chart of a few dozen points, where the edges outnumber the buckets: the trim has to choose
    # among all of them anyway, and merging first would only blur its choice.
    candidates = 2 * span / width(level)
    grouping = candidates > GROUPED_SHARE * max_points and max_points >= MIN_POINTS_TO_GROUP
    group = math.ceil(candidates / (GROUPED_SHARE * max_points)) if grouping else 1
    rows = summary_points(session=session, run_id=run_id, name=name, low=low, high=high, level=level,
                          raw=lambda a, b: _raw(session, run_id, name, a, b), group=group)
    first = _raw(session, run_id, name, low, high, limit=1)  # the true start of the curve
    if first and (not rows or rows[0][0] > first[0][0]):
        rows.insert(0, first[0])
    return min_max_downsample(rows, max_points), True


Row = tuple[int, float | None, float]
# The share of a downsampled series' max_points that whole summary buckets may fill.
GROUPED_SHARE = 0.8
MIN_POINTS_TO_GROUP = 200


def _raw(session: Session, run_id: int, name: str, low: int, high: int, limit: int | None = None) -> list[Row]:
    if high < low:
        return []
    # Straight to the driver: the ORM's per-row work was most of a chart read's cost.
    sql = "SELECT step, value, time FROM metric_points WHERE run_id = ? AND name = ? AND step >= ? AND step <= ? ORDER BY step"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    return fetch_rows(session, sql, (run_id, name, low, high))  # type: ignore[return-value]


def min_max_downsample(rows: Sequence[Row], max_points: int) -> list[Row]:
    """At most max_points rows: the first, the last, and per bucket the minimum, the maximum and
    (where there is one) the first NaN, in step order.

    Spikes survive: a bucket's outlier is always one of its kept points, and so is a NaN (stored as None).
    """
    if len(rows) <= max_points or max_points < 5:
        return list(rows)
    per_bucket = 3 if any(row[1] is None for row in rows) else 2
    buckets = max(1, (max_points - 2) // per_bucket)
    inner = rows[1:-1]
    size = math.ceil(len(inner) / buckets)
    kept: list[Row] = [rows[0]]
    for start in range(0, len(inner), size):
        # A plain loop beats min()/max() with a key here: this runs over every point of every chart.
        low = high = missing = None
        low_value = math.inf
        high_value = -math.inf
        for row in inner[start:start + size]:
            value = row[1]
            if value is None:
                if missing is None:
                    missing = row
                continue
            if value < low_value:
                low, low_value = row, value
            if value > high_value:
                high, high_value = row, value
        chosen = [point for point in (low, high, missing) if point is not None]
        if low is high and low is not None:
            chosen.remove(low)  # the same object as high
        chosen.sort(key=_step_of)
        kept.extend(chosen)
    kept.append(rows[-1])
    return kept


_step_of = itemgetter(0)
_value_in = itemgetter(1)
_time_in = itemgetter(2)
