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
