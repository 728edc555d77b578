"""Storing points gives the same rows on PostgreSQL (a binary COPY, redone as one statement over arrays when
it meets a duplicate) as on SQLite (executemany): duplicates within a batch keep the first, a resend
changes nothing, non-finite values become NULL."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from server.models import MetricPoint, Run
from server.services.metrics import insert_points, read_series
from server.services.rollups import RollupTracker

pytestmark = pytest.mark.postgres

REPO_ROOT = Path(__file__).resolve().parents[2]


def _migrated(url: str) -> Session:
    subprocess.run([sys.executable, "-m", "orpo_dash.cli", "migrate", "--database-url", url],
                   cwd=REPO_ROOT, check=True, capture_output=True)
    return Session(create_engine(url))


def _stored_after_batches(session: Session) -> list[tuple]:
    run = Run(name="bulk", status="running", config={}, tags=[], worker_token_hash="x" * 64)
    session.add(run)
    session.commit()
    # A batch that meets nothing stored (PostgreSQL: the plain COPY), NaN inside.
    clean = [(300 + step, "m0", step * 0.25, 2000.0) for step in range(10)] + [(301, "m1", math.nan, 2001.0)]
    insert_points(session=session, run_id=run.id, points=clean)
    session.commit()
    # Then batches that do (PostgreSQL: the COPY fails and the batch is redone ignoring duplicates).
    batch = [(step, f"m{i}", step * 0.5 + i, 1000.0 + step) for step in range(200) for i in range(3)]
    batch[7] = (2, "m1", math.nan, 1002.0)
    batch.append((0, "m0", 99.0, 5.0))  # the same (name, step) again in one batch: the first stays
    batch.append((1, "m2", math.inf, 6.0))
    insert_points(session=session, run_id=run.id, points=batch)
    session.commit()
    insert_points(session=session, run_id=run.id, points=[(0, "m0", -1.0, 7.0), (200, "m0", 3.0, 8.0)])
    session.commit()
    rows = session.execute(
        select(MetricPoint.name, MetricPoint.step, MetricPoint.value, MetricPoint.time)
        .where(MetricPoint.run_id == run.id).order_by(MetricPoint.name, MetricPoint.step)
    )
    return [tuple(row) for row in rows]


def test_postgres_bulk_insert_stores_what_sqlite_stores(tmp_path: Path, postgres_url: str) -> None:
    with _migrated(f"sqlite:///{tmp_path / 'points.sqlite3'}") as sqlite_session:
        expected = _stored_after_batches(sqlite_session)
    with _migrated(postgres_url) as postgres_session:
        got = _stored_after_batches(postgres_session)
        postgres_session.get_bind().dispose()
    assert len(expected) == 612
    assert ("m0", 0, 0.0, 1000.0) in expected and ("m1", 2, None, 1002.0) in expected
    assert ("m0", 309, 2.25, 2000.0) in expected and ("m1", 301, None, 2001.0) in expected
    assert ("m2", 1, 2.5, 1001.0) in expected  # the inf after the first (m2, 1) was a duplicate
    assert got == expected


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
def test_postgres_stores_a_lone_non_finite_value_as_null(value: float, postgres_url: str) -> None:
    with _migrated(postgres_url) as session:
        run = Run(name="bulk", status="running", config={}, tags=[], worker_token_hash="x" * 64)
        session.add(run)
        session.commit()
        insert_points(session=session, run_id=run.id, points=[(0, "loss", value, 1.0)])
        session.commit()
        assert session.scalar(select(MetricPoint.value)) is None
        session.get_bind().dispose()


SPIKES = {12_345: math.nan, 20_001: 9.0}


def _chart_reads(session: Session) -> list[tuple]:
    """Summaries written while ingesting, then the run page's reads at full resolution and downsampled."""
    run = Run(name="chart", status="running", config={}, tags=[], worker_token_hash="x" * 64)
    session.add(run)
    session.commit()
    tracker = RollupTracker()
    for start in range(0, 30_000, 4_999):  # batches straddle bucket edges
        points = [(step, "loss", SPIKES.get(step, math.sin(step / 300)), float(step))
                  for step in range(start, min(30_000, start + 4_999))]
        # As ingestion does: the first batch's summaries are read back, the later ones built in memory.
        all_stored = insert_points(session=session, run_id=run.id, points=points)
        tracker.update(session=session, run_id=run.id, points=points, all_stored=all_stored)
        session.commit()
    reads = []
    for max_points in (40_000, 2_000, 300, 20):
        series, downsampled = read_series(session=session, run_id=run.id, names=["loss"], max_points=max_points)
        reads.append((max_points, downsampled, series["loss"].step, series["loss"].value, series["loss"].time))
    return reads


def test_postgres_chart_reads_match_sqlite(tmp_path: Path, postgres_url: str) -> None:
    with _migrated(f"sqlite:///{tmp_path / 'chart.sqlite3'}") as sqlite_session:
        expected = _chart_reads(sqlite_session)
    with _migrated(postgres_url) as postgres_session:
        got = _chart_reads(postgres_session)
        postgres_session.get_bind().dispose()
    assert got == expected
    assert [downsampled for _, downsampled, *_ in got] == [False, True, True, True]
    for max_points, _, steps, values, _ in got[1:]:
        assert len(steps) <= max_points and (20_001, 9.0) in zip(steps, values, strict=True)
        assert values[steps.index(12_345)] is None  # the NaN, kept as null
