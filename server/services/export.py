"""Metric exports, streamed: every point of a run at full resolution, as CSV or JSON, read page by page
so a run with millions of points never sits in memory whole.

The generators open their own session from the factory they are given: they run while the response
is being sent, after the request's own session (SessionDep) may already be closed.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from server.models import Alert, MetricPoint, Run
from server.schemas import AlertPublic

# Rows fetched from the database (and sent) per chunk.
EXPORT_PAGE_ROWS = 5000
CSV_COLUMNS = ["step", "name", "value", "time"]

PointRow = tuple[int, str, float | None, float]


def point_pages(
    *, session: Session, run_id: int, after_step: int = -1, page_rows: int | None = None
) -> Iterator[list[PointRow]]:
    """A run's points after `after_step`, ordered by step then name, in lists of up to page_rows
    (default EXPORT_PAGE_ROWS). yield_per streams from the database cursor (server-side on PostgreSQL)."""
    statement = (
        select(MetricPoint.step, MetricPoint.name, MetricPoint.value, MetricPoint.time)
        .where(MetricPoint.run_id == run_id, MetricPoint.step > after_step)
        .order_by(MetricPoint.step, MetricPoint.name)
        .execution_options(yield_per=page_rows or EXPORT_PAGE_ROWS)
    )
    for partition in session.execute(statement).partitions():
        yield [(step, name, value, when) for step, name, value, when in partition]


def run_csv(*, session_factory: sessionmaker[Session], run_id: int) -> Iterator[str]:
    """One run's points as CSV: step,name,value,time."""
    yield _csv_text([CSV_COLUMNS])
    with session_factory() as session:
        for page in point_pages(session=session, run_id=run_id):
            yield _csv_text(page)


def runs_csv(*, session_factory: sessionmaker[Session], run_ids: Sequence[int]) -> Iterator[str]:
    """Several runs' points in one CSV, in the order given, with a leading run_id column."""
    yield _csv_text([["run_id", *CSV_COLUMNS]])
    with session_factory() as session:
        for run_id in run_ids:
            for page in point_pages(session=session, run_id=run_id):
                yield _csv_text((run_id, *row) for row in page)


def run_json(*, session_factory: sessionmaker[Session], run_id: int) -> Iterator[str]:
    """One run as {"run": {id, name, status, config, parent_run_id, from_alert_id}, "alerts": [alert objects,
    as the API gives them], "points": [{step, name, value, time}, ...]}, byte for byte what json.dumps of the
    whole object gives."""
    with session_factory() as session:
        yield from _run_json(session, run_id)


def runs_json(*, session_factory: sessionmaker[Session], run_ids: Sequence[int]) -> Iterator[str]:
    """A JSON array of the runs' single-run exports, in the order given."""
    yield "["
    with session_factory() as session:
        for index, run_id in enumerate(run_ids):
            if index:
                yield ", "
            yield from _run_json(session, run_id)
    yield "]"


def _run_json(session: Session, run_id: int) -> Iterator[str]:
    run = session.get(Run, run_id)
    if run is None:  # deleted since the route checked it
        yield "null"
        return
    header: dict[str, Any] = {"id": run.id, "name": run.name, "status": run.status, "config": run.config,
                              "parent_run_id": run.parent_run_id, "from_alert_id": run.from_alert_id}
    alerts = [AlertPublic.model_validate(alert).model_dump(mode="json")
              for alert in session.scalars(select(Alert).where(Alert.run_id == run_id).order_by(Alert.id))]
    yield '{"run": ' + json.dumps(header) + ', "alerts": ' + json.dumps(alerts) + ', "points": ['
    first = True
    for page in point_pages(session=session, run_id=run_id):
        text = ", ".join(json.dumps({"step": s, "name": n, "value": v, "time": t}) for s, n, v, t in page)
        yield text if first else ", " + text
        first = False
    yield "]}"


def _csv_text(rows: Iterable[Sequence[Any]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    return buffer.getvalue()
