"""The runs list's "best" columns (GET /api/runs?best=...): the lowest loss, the highest accuracy, nothing for
a metric with no better direction, NaN (stored as NULL) never best, and one query for all runs, on SQLite
and PostgreSQL alike."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, event
from sqlalchemy.orm import Session

from server.models import Run
from server.services.metrics import insert_points
from server.services.runs import best_values

REPO_ROOT = Path(__file__).resolve().parents[2]


def _migrated(url: str) -> Session:
    subprocess.run([sys.executable, "-m", "orpo_dash.cli", "migrate", "--database-url", url],
                   cwd=REPO_ROOT, check=True, capture_output=True)
    return Session(create_engine(url))


def _check_best_values(session: Session) -> None:
    runs = [Run(name=f"r{i}", status="completed", config={}, tags=[], worker_token_hash="x" * 64) for i in range(3)]
    session.add_all(runs)
    session.commit()
    for i, run in enumerate(runs[:2]):
        points = [(step, name, value + i, float(step)) for step, (name, value) in enumerate(
            [("eval/loss", 2.0), ("eval/loss", 1.5), ("eval/loss", 1.7), ("accuracy", 0.4), ("accuracy", 0.9),
             ("learning_rate", 1e-5)])]
        points.append((10, "eval/loss", math.nan, 10.0))  # a NaN eval is no record low
        insert_points(session=session, run_id=run.id, points=points)
    session.commit()

    ids = [run.id for run in runs]
    statements: list[str] = []
    event.listen(session.get_bind(), "before_cursor_execute", lambda *args: statements.append(args[2]))
    got = best_values(session=session, run_ids=ids, names=["eval/loss", "accuracy", "learning_rate", "eval/loss"])
    assert len(statements) == 1, statements
    assert got[ids[0]] == {"eval/loss": 1.5, "accuracy": 0.9}
    assert got[ids[1]] == {"eval/loss": 2.5, "accuracy": 1.9}
    assert got[ids[2]] == {"eval/loss": None, "accuracy": None}  # nothing logged yet
    assert best_values(session=session, run_ids=ids, names=["learning_rate"]) == {run_id: {} for run_id in ids}


def test_best_values_on_sqlite(tmp_path: Path) -> None:
    with _migrated(f"sqlite:///{tmp_path / 'best.sqlite3'}") as session:
        _check_best_values(session)


@pytest.mark.postgres
def test_best_values_on_postgres(postgres_url: str) -> None:
    with _migrated(postgres_url) as session:
        _check_best_values(session)
        session.get_bind().dispose()
