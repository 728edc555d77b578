"""After a restart a run's alert engine is restored from its saved state, not rebuilt from history;
a batch that fails touches only its own run's state; series reads after a step need no sort."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from sqlalchemy import delete

from orpo_dash.diagnostics import AlertEngine
from orpo_dash.run_config import RunConfig
from server.db import make_engine, make_session_factory
from server.migrate import upgrade_to_head
from server.models import AlertEngineState, MetricPoint
from server.services import ingest
from server.services import runs as run_service
from server.services.ingest import IngestState, apply_batch
from server.services.metrics import SERIES_AFTER_SQL, points_after_each
from server.writer import DatabaseWriter

METRICS = ("loss", "nll_loss", "log_odds_ratio", "logps_chosen", "logps_rejected")


@pytest.fixture
def factory(tmp_path: Path, tiny_dataset_file: Path):  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'e.sqlite3'}"
    upgrade_to_head(url)
    return make_session_factory(make_engine(url))


def _new_run(factory, tmp_path: Path, dataset: Path) -> int:  # type: ignore[no-untyped-def]
    with factory() as session, session.begin():
        run, _ = run_service.create_run(session=session, config=RunConfig(dataset=str(dataset)), name=None,
                                        runs_dir=tmp_path, output_root=tmp_path)
        return run.id


def _batch(seq: int, steps: range) -> dict:
    # A log odds ratio that never rises: log_odds_flat opens partway through.
    return {"type": "batch", "seq": seq, "points": [
        [step, name, {"loss": 2.0 - step * 1e-4, "log_odds_ratio": 0.01 * math.sin(step)}.get(name, -1.0), 0.0]
        for step in steps for name in METRICS]}


def _apply(factory, state: IngestState, run_id: int, seq: int, steps: range) -> None:  # type: ignore[no-untyped-def]
    with factory() as session, session.begin():
        apply_batch(session=session, run_id=run_id, message=_batch(seq, steps), state=state)


def _stream_300_steps(factory, run_id: int) -> IngestState:  # type: ignore[no-untyped-def]
    state = IngestState()
    for seq, first in enumerate(range(0, 300, 50), start=1):
        _apply(factory, state, run_id, seq, range(first, first + 50))
    return state


def _uninterrupted(steps: range, factory, run_id: int) -> AlertEngine:  # type: ignore[no-untyped-def]
    with factory() as session:  # the server's engine fits its advice to the run's config: so does this one
        config = run_service.get_run(session=session, run_id=run_id).config
    engine = AlertEngine(config=config)
    engine.feed((step, name, value) for step, name, value, _ in _batch(0, steps)["points"])
    return engine


def test_restart_restores_the_saved_engine_and_needs_no_history(factory, tmp_path, tiny_dataset_file, monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.setattr(ingest, "SAVE_EVERY_SECONDS", 0.0)  # save with every batch
    run_id = _new_run(factory, tmp_path, tiny_dataset_file)
    live = _stream_300_steps(factory, run_id).alerts._engines[run_id]
    assert live.open_alerts(), "the run should have an open alert, or the comparison proves nothing"

    # A restart: no engine in memory. Drop the raw points the saved state covers: a restored engine never
    # reads them, one rebuilt from history would lose them and differ.
    with factory() as session, session.begin():
        session.execute(delete(MetricPoint).where(MetricPoint.run_id == run_id, MetricPoint.step < 290))
    restarted = IngestState()
    _apply(factory, restarted, run_id, 7, range(300, 400))
    assert restarted.alerts._engines[run_id].state() == _uninterrupted(range(0, 400), factory, run_id).state()


def test_points_committed_after_the_last_save_are_replayed(factory, tmp_path, tiny_dataset_file):  # type: ignore[no-untyped-def]
    run_id = _new_run(factory, tmp_path, tiny_dataset_file)
    _stream_300_steps(factory, run_id)  # saved with the first batch only (saves are 5 s apart)
    with factory() as session:
        saved = session.get(AlertEngineState, run_id)
        assert saved is not None and '"current":49' in saved.state.replace(" ", "")
    restarted = IngestState()
    _apply(factory, restarted, run_id, 7, range(300, 350))
    assert restarted.alerts._engines[run_id].state() == _uninterrupted(range(0, 350), factory, run_id).state()


def test_a_failing_batch_leaves_other_runs_engines_alone(factory, tmp_path, tiny_dataset_file) -> None:  # type: ignore[no-untyped-def]
    good, bad = _new_run(factory, tmp_path, tiny_dataset_file), _new_run(factory, tmp_path, tiny_dataset_file)
    writer = DatabaseWriter(factory, on_committed=lambda announcements: None)
    writer.start()
    try:
        writer.submit_batch(good, _batch(1, range(0, 50))).result(timeout=30)
        engine = writer.state.alerts._engines[good]
        with pytest.raises(ingest.BatchOutOfOrder):
            writer.submit_batch(bad, _batch(5, range(0, 5))).result(timeout=30)  # seq 5 before 1: refused
        writer.submit_batch(good, _batch(2, range(50, 60))).result(timeout=30)
        assert writer.state.alerts._engines[good] is engine  # kept, not rebuilt
    finally:
        writer.stop()


def test_reads_after_a_step_use_the_primary_key_without_a_sort(factory, tmp_path, tiny_dataset_file) -> None:  # type: ignore[no-untyped-def]
    run_id = _new_run(factory, tmp_path, tiny_dataset_file)
    with factory() as session, session.begin():
        apply_batch(session=session, run_id=run_id, message=_batch(1, range(0, 100)), state=IngestState())
    with factory() as session:
        connection = session.connection()
        plan = " ".join(str(row[-1]) for row in connection.exec_driver_sql(
            "EXPLAIN QUERY PLAN " + SERIES_AFTER_SQL, (run_id, "loss", 10)).fetchall())
        assert "PRIMARY KEY" in plan and "TEMP B-TREE" not in plan, plan
        points = list(points_after_each(session=session, run_id=run_id, names=["log_odds_ratio", "loss"],
                                        after={"loss": 97}, default_after=95))
    assert [(step, name) for step, name, _, _ in points] == [
        (96, "log_odds_ratio"), (97, "log_odds_ratio"), (98, "log_odds_ratio"), (98, "loss"),
        (99, "log_odds_ratio"), (99, "loss")]


def test_an_engine_that_missed_batches_applied_by_another_process_is_reloaded(factory, tmp_path, tiny_dataset_file):  # type: ignore[no-untyped-def]
    """Two dashboard processes on one database (server/fanout.py): a worker streams to A, moves to B,
    comes back to A. A's engine in memory missed B's batches; it must judge with them, as one engine would."""
    run_id = _new_run(factory, tmp_path, tiny_dataset_file)
    process_a, process_b = IngestState(), IngestState()
    _apply(factory, process_a, run_id, 1, range(0, 100))
    _apply(factory, process_b, run_id, 2, range(100, 200))  # the worker reconnected to B
    _apply(factory, process_a, run_id, 3, range(200, 300))  # and back to A
    assert process_a.alerts._engines[run_id].state() == _uninterrupted(range(0, 300), factory, run_id).state()
