"""Metric series: storage of points and min/max-preserving downsampled reads."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from orpo_dash.protocol import Point
from server.models import MetricPoint
from server.schemas import Series


def insert_points(*, session: Session, run_id: int, points: Sequence[Point]) -> None:
    """Insert points, ignoring any (run, name, step) already stored: a resend never duplicates.

    Goes straight to the driver's executemany with plain tuples: the ORM's per-row bookkeeping
    cost more than SQLite itself at the ingestion rates a busy run produces.
    """
    if not points:
        return
    # Non-finite values are stored as NULL: SQLite turns NaN into NULL anyway, and JSON has no NaN/Inf.
    rows = [(run_id, name, step, value if math.isfinite(value) else None, when) for step, name, value, when in points]
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        sql = ("INSERT INTO metric_points (run_id, name, step, value, time) VALUES (%s, %s, %s, %s, %s) "
               "ON CONFLICT (run_id, name, step) DO NOTHING")
    else:
        sql = "INSERT OR IGNORE INTO metric_points (run_id, name, step, value, time) VALUES (?, ?, ?, ?, ?)"
    connection.exec_driver_sql(sql, rows)


def metric_names(*, session: Session, run_id: int) -> list[str]:
    statement = select(MetricPoint.name).where(MetricPoint.run_id == run_id).distinct().order_by(MetricPoint.name)
    return list(session.scalars(statement))


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
    for name in names:
        statement = (
            select(MetricPoint.step, MetricPoint.value, MetricPoint.time)
            .where(MetricPoint.run_id == run_id, MetricPoint.name == name)
            .order_by(MetricPoint.step)
        )
        if min_step is not None:
            statement = statement.where(MetricPoint.step >= min_step)
        if max_step is not None:
            statement = statement.where(MetricPoint.step <= max_step)
        rows = session.execute(statement).all()
        if len(rows) > max_points:
            rows = min_max_downsample(rows, max_points)
            downsampled = True
        result[name] = Series(
            step=[row[0] for row in rows], value=[row[1] for row in rows], time=[row[2] for row in rows]
        )
    return result, downsampled


def min_max_downsample(rows: Sequence[tuple[int, float | None, float]], max_points: int) -> list[tuple[int, float | None, float]]:
    """Keep the first, the last, and per bucket the minimum and maximum points (in step order).

    Spikes survive: a single NaN (stored as None) or outlier in a bucket is always one of its kept points.
    """
    if len(rows) <= max_points or max_points < 4:
        return list(rows)
    buckets = max(1, (max_points - 2) // 2)
    inner = rows[1:-1]
    size = math.ceil(len(inner) / buckets)
    kept: list[tuple[int, float | None, float]] = [rows[0]]
    for start in range(0, len(inner), size):
        bucket = inner[start:start + size]
        missing = [row for row in bucket if row[1] is None]
        finite = [row for row in bucket if row[1] is not None]
        chosen: list[tuple[int, float | None, float]] = []
        if missing:
            chosen.append(missing[0])
        if finite:
            low = min(finite, key=lambda row: row[1])  # type: ignore[arg-type, return-value]
            high = max(finite, key=lambda row: row[1])  # type: ignore[arg-type, return-value]
            chosen.extend([low] if low is high else [low, high])
        kept.extend(sorted(chosen[:2] if not missing else chosen[:3], key=lambda row: row[0]))
    kept.append(rows[-1])
    return kept
