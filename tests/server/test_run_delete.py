"""metric_points has no foreign key to runs (it cost more than the insert): deleting a run must still take
every point with it, also when a writer of another dashboard process is storing points for that run."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import func, select

from orpo_dash.run_config import RunConfig
from server.db import make_engine, make_session_factory
from server.migrate import upgrade_to_head
from server.models import MetricPoint, MetricRollup, Run
from server.services import runs as run_service
from server.services.metrics import insert_points
from server.services.rollups import RollupTracker


def _factory_with_run(url: str, folder: Path, dataset: Path):  # type: ignore[no-untyped-def]
    upgrade_to_head(url)
    factory = make_session_factory(make_engine(url))
    with factory() as session, session.begin():
        run, _ = run_service.create_run(session=session, config=RunConfig(dataset=str(dataset)), name=None,
                                        runs_dir=folder, output_root=folder)
    return factory, run.id


def _points_of(factory, run_id: int) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    with factory() as session:
        points = session.scalar(select(func.count()).select_from(MetricPoint).where(MetricPoint.run_id == run_id))
        rollups = session.scalar(select(func.count()).select_from(MetricRollup).where(MetricRollup.run_id == run_id))
    return points or 0, rollups or 0


def _store(factory, run_id: int, steps: range) -> None:  # type: ignore[no-untyped-def]
    points = [(step, name, 0.5, 1.0) for step in steps for name in ("loss", "nll_loss")]
    with factory() as session, session.begin():
        insert_points(session=session, run_id=run_id, points=points)
        RollupTracker().update(session=session, run_id=run_id, points=points)


def _delete(factory, run_id: int) -> None:  # type: ignore[no-untyped-def]
    with factory() as session, session.begin():
        run_service.delete_run(session=session, run=session.get(Run, run_id))


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_deleting_a_run_deletes_its_points_and_summaries(backend: str, request: pytest.FixtureRequest, tmp_path: Path,
                                                         tiny_dataset_file: Path) -> None:
    url = f"sqlite:///{tmp_path / 'd.sqlite3'}" if backend == "sqlite" else request.getfixturevalue("postgres_url")
    factory, run_id = _factory_with_run(url, tmp_path, tiny_dataset_file)
    _, other_id = _factory_with_run(url, tmp_path, tiny_dataset_file)
    _store(factory, run_id, range(300))
    _store(factory, other_id, range(100))
    assert _points_of(factory, run_id) == (600, 8)
    _delete(factory, run_id)
    assert _points_of(factory, run_id) == (0, 0)
    assert _points_of(factory, other_id) == (200, 2)  # another run's points stay
    factory.kw["bind"].dispose()


@pytest.mark.postgres
def test_a_writer_holding_the_run_lock_cannot_leave_points_behind_a_delete(postgres_url: str, tmp_path: Path,
                                                                           tiny_dataset_file: Path) -> None:
    """Two processes' writers: A has locked the run (as apply_batch does) and is storing a batch when B
    deletes the run. B waits for A's commit, then deletes A's points too."""
    factory, run_id = _factory_with_run(postgres_url, tmp_path, tiny_dataset_file)
    locked, deleted = threading.Event(), threading.Event()

    def delete_in_other_process() -> None:
        locked.wait(10)
        _delete(factory, run_id)
        deleted.set()

    deleter = threading.Thread(target=delete_in_other_process)
    deleter.start()
    with factory() as session, session.begin():
        session.get(Run, run_id, with_for_update=True)
        locked.set()
        assert not deleted.wait(1.0), "the delete went ahead while the writer held the run's lock"
        insert_points(session=session, run_id=run_id, points=[(step, "loss", 0.5, 1.0) for step in range(50)])
    deleter.join(10)
    assert deleted.is_set()
    assert _points_of(factory, run_id) == (0, 0)
    factory.kw["bind"].dispose()
