"""Imports are judged by the alert engine in a separate process while the writer stores them
(server/services/import_judge.py): the same alerts and points as judging in the request's thread, with
SQLite and PostgreSQL, and a judgement that fails rolls the whole import back."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path

from orpo_dash.diagnostics import Alert as AlertChange
from orpo_dash.import_common import ImportedRun
from server.services.import_judge import JudgePool
from tests.conftest import LiveServer, _serve, assert_no_server_tracebacks
from tests.import_fixtures import write_trainer_state
from tests.server.test_imports import _import, _run_id, _series

IN_THREAD = {"ORPO_DASH_IMPORT_JUDGE_PROCESS": "false"}


def _descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").iterdir():
            children = [int(c) for c in (task / "children").read_text().split()]
            found += children
            todo += children
    return found


def _alerts(run: dict) -> list[dict]:  # type: ignore[type-arg]
    return sorted(({k: v for k, v in alert.items() if k not in ("id", "created_at", "updated_at", "run_id")}
                   for alert in run["alerts"]), key=lambda a: (a["kind"], a["onset_step"], a["step"]))


def _both_ways(tmp_path: Path, database_urls: tuple[str | None, str | None]) -> Iterator[tuple[LiveServer, LiveServer]]:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    parallel = _serve(tmp_path / "a", database_urls[0])
    sequential = _serve(tmp_path / "b", database_urls[1], IN_THREAD)
    yield next(parallel), next(sequential)
    for server in (parallel, sequential):
        next(server, None)


def _check_same_run(servers: tuple[LiveServer, LiveServer], folder: Path) -> None:
    parallel, sequential = servers
    assert not [pid for pid in _descendants(parallel.process.pid)  # type: ignore[union-attr]
                if "forkserver" in Path(f"/proc/{pid}/cmdline").read_text()]  # made at the first import, not before
    runs = []
    for server in servers:
        run_id = _run_id(_import(server, folder))
        runs.append((server.api("GET", f"/api/runs/{run_id}").json(), _series(server, run_id)))
    (made, made_points), (expected, expected_points) = runs
    assert _alerts(made) == _alerts(expected) and made["alerts"], made["alerts"]
    assert "over_penalization" in {alert["kind"] for alert in made["alerts"]}
    assert made_points == expected_points
    assert {k: made[k] for k in ("last_step", "total_steps", "config", "name")} == \
           {k: expected[k] for k in ("last_step", "total_steps", "config", "name")}
    # The parallel dashboard judged in its own judge process (a forkserver child), the other made none.
    cmdlines = {server.url: [Path(f"/proc/{pid}/cmdline").read_text() for pid in _descendants(server.process.pid)]  # type: ignore[union-attr]
                for server in servers}
    assert any("forkserver" in line for line in cmdlines[parallel.url]), cmdlines
    assert not any("forkserver" in line for line in cmdlines[sequential.url]), cmdlines
    for server in servers:
        assert_no_server_tracebacks(server)


def test_judged_in_a_process_the_alerts_and_points_equal_the_in_thread_ones(tmp_path) -> None:  # type: ignore[no-untyped-def]
    folder = write_trainer_state(tmp_path / "run" / "checkpoint-1")
    servers = _both_ways(tmp_path, (None, None))
    _check_same_run(next(servers), folder)
    next(servers, None)


def test_the_same_with_postgresql(tmp_path, postgres_url, module_postgres_url) -> None:  # type: ignore[no-untyped-def]
    folder = write_trainer_state(tmp_path / "run" / "checkpoint-1")
    servers = _both_ways(tmp_path, (postgres_url, module_postgres_url))
    _check_same_run(next(servers), folder)
    next(servers, None)


class _FailingJudge(JudgePool):
    """The judge process's answer when the alert engine raises on a run (as a bug in a detector would)."""

    def submit(self, imported: ImportedRun) -> Future[list[AlertChange]]:
        failed: Future[list[AlertChange]] = Future()
        failed.set_exception(ZeroDivisionError("float division by zero"))
        return failed


def test_a_failed_judgement_rolls_the_whole_import_back_with_a_clear_500(client, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The writer's transaction waits for the judgement at its end: when it raises, nothing is stored."""
    from sqlalchemy import func, select

    from server.models import Alert, LogLine, MetricPoint, MetricRollup, Run

    body = (write_trainer_state(tmp_path / "run") / "trainer_state.json").read_bytes()
    client.app.state.judge_pool = _FailingJudge()
    answer = client.post("/api/imports", params={"filename": "trainer_state.json"}, content=body)
    assert answer.status_code == 500, answer.text
    assert answer.json()["detail"] == ("trainer_state.json: the alert engine failed while judging this run "
                                       "(ZeroDivisionError: float division by zero); nothing was stored. "
                                       "Please report it with the file.")
    with client.app.state.session_factory() as session:
        for table in (Run, MetricPoint, MetricRollup, Alert, LogLine):
            assert session.scalar(select(func.count()).select_from(table)) == 0, table
    client.app.state.judge_pool = JudgePool()  # the writer lives on: the next import is whole
    answer = client.post("/api/imports", params={"filename": "trainer_state.json"}, content=body)
    assert answer.status_code == 201, answer.text
    assert "over_penalization" in {alert["kind"] for alert in answer.json()["alerts"]}
    client.app.state.judge_pool.shutdown()


def _small_run(tmp_path: Path) -> ImportedRun:
    from orpo_dash.run_import import read_run

    return read_run(write_trainer_state(tmp_path / "run") / "trainer_state.json")


def _long_run(steps: int = 30_000) -> ImportedRun:
    """A run long enough that its judgement takes a while (about a second), so it can be killed under way."""
    import numpy as np

    from orpo_dash.diagnostics.loading import MetricSeries
    from tests.over_penalized import STEPS, over_penalized_metrics

    step = np.arange(1, steps + 1, dtype=np.int64)
    # The over-penalized run of tests/over_penalized.py, stretched to `steps` (each of its steps held a while).
    rows = [over_penalized_metrics(1 + int(s) * STEPS // (steps + 1)) for s in step]
    return ImportedRun(format="trainer_state", name="long", config={},
                       series={name: MetricSeries(step, np.array([row[name] for row in rows], dtype=np.float64))
                               for name in rows[0]})


def test_without_a_process_pool_the_run_is_judged_in_thread_and_the_log_says_why(tmp_path, monkeypatch, caplog) -> None:  # type: ignore[no-untyped-def]
    from server.services import import_judge

    imported = _small_run(tmp_path)
    expected = import_judge.judge_run(imported)
    monkeypatch.setattr(import_judge, "START_METHOD", "no-such-start-method")  # as where processes are not allowed
    pool = JudgePool()
    with caplog.at_level("WARNING", logger=import_judge.__name__):
        changes = pool.result(pool.submit(imported), imported, timeout=60)
    assert changes == expected and expected
    assert "imports are judged in the request thread: no process pool" in caplog.text
    assert "no-such-start-method" in caplog.text


def test_a_judge_process_killed_mid_judgement_is_replaced_by_judging_in_thread(tmp_path, caplog) -> None:  # type: ignore[no-untyped-def]
    import os
    import signal

    from server.services import import_judge

    imported = _long_run()
    expected = import_judge.judge_run(imported)
    pool = JudgePool()
    try:
        assert pool.result(pool.submit(imported), imported, timeout=120) == expected  # started, and warm
        executor = pool._executor
        assert executor is not None
        judgement = pool.submit(imported)
        for pid in list(executor._processes):  # type: ignore[attr-defined]
            os.kill(pid, signal.SIGKILL)  # as the kernel's OOM killer would
        with caplog.at_level("WARNING", logger=import_judge.__name__):
            assert pool.result(judgement, imported, timeout=120) == expected and expected
        assert "the judge process died during a judgement" in caplog.text
        # The next import gets a new judge process.
        assert pool.result(pool.submit(imported), imported, timeout=120) == expected
        assert pool._executor is not None and pool._executor is not executor
    finally:
        pool.shutdown()
