"""Issue 17 part 2: `orpo-dash import` and POST /api/imports bring a run made elsewhere into a real
dashboard as a run with status `imported`, its values equal to what the tool logged, under our names,
with the alerts the engine finds in it. Fixtures are written by the real tools (tests/import_fixtures.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, assert_no_server_tracebacks
from tests.import_fixtures import (
    trl_logs,
    wandb_history_rows,
    write_mlflow_run,
    write_tensorboard,
    write_trainer_state,
    write_trl_checkpoint,
    write_wandb_exports,
    write_wandb_run,
)
from tests.over_penalized import STEPS


def _import(server, path: Path, *extra: str) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    return subprocess.run([sys.executable, "-m", "orpo_dash.cli", "import", str(path), "--server", server.url, *extra],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)


def _series(server, run_id: int) -> dict[str, list[tuple[int, float | None]]]:  # type: ignore[no-untyped-def]
    body = server.api("GET", f"/api/runs/{run_id}/metrics", params={"max_points": 20000}).json()
    return {name: [(p[0], p[1]) for p in zip(s["step"], s["value"], strict=True)] for name, s in body["series"].items()}


def _run_id(done: subprocess.CompletedProcess[str]) -> int:
    assert done.returncode == 0, done.stderr
    return int(done.stdout.strip().rsplit("/", 1)[1])


def test_a_checkpoint_folder_imports_with_trl_values_under_our_names_and_its_alerts(live_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    folder = write_trainer_state(tmp_path / "my-orpo" / f"checkpoint-{STEPS}", model="HuggingFaceTB/SmolLM2-135M")
    run_id = _run_id(_import(live_server, folder))
    run = live_server.api("GET", f"/api/runs/{run_id}").json()
    assert run["status"] == "imported" and run["name"] == f"my-orpo checkpoint-{STEPS}"
    assert run["config"]["model"] == "HuggingFaceTB/SmolLM2-135M"
    assert run["config"]["max_steps"] == STEPS and run["config"]["batch_size"] == 8
    assert run["config"]["imported_from"] == {"format": "trainer_state", "file": "trainer_state.json"}
    assert run["last_step"] == STEPS and run["finished_at"]

    series = _series(live_server, run_id)
    logged = {step: trl_logs(step) for step in range(1, STEPS + 1)}
    # TRL name -> ours (docs/metrics.md): values exactly as logged, negated for TRL's log_odds_ratio.
    expected = {
        "loss": ("loss", 1), "nll_loss": ("nll_loss", 1), "or_loss": ("log_odds_ratio", -1),
        "log_odds_ratio": ("log_odds_chosen", 1), "accuracy": ("rewards/accuracies", 1),
        "logps_chosen": ("logps/chosen", 1), "logps_rejected": ("logps/rejected", 1),
        "grad_norm": ("grad_norm", 1), "learning_rate": ("learning_rate", 1),
    }
    for ours, (theirs, sign) in expected.items():
        assert series[ours] == [(step, sign * logged[step][theirs]) for step in range(1, STEPS + 1)], ours
    assert series["eval/loss"] == [(step, 1.5 - step / 1000) for step in range(20, STEPS + 1, 20)]
    assert series["eval/or_loss"] == [(step, 0.4) for step in range(20, STEPS + 1, 20)]

    # The alert engine judged it as it judges a streamed run: this run over-penalizes.
    kinds = {alert["kind"] for alert in run["alerts"]}
    assert "over_penalization" in kinds, run["alerts"]
    # Advice is not fitted to settings the file does not have (no beta, no peak learning rate in it).
    assert all(alert["suggested_change"] is None for alert in run["alerts"])
    # It is terminal: no stop, and it lists, exports and deletes like any run.
    assert live_server.api("GET", "/api/runs", params={"status": "imported"}).json()[0]["id"] == run_id
    exported = live_server.api("GET", f"/api/runs/{run_id}/export", params={"format": "json"}).json()
    assert exported["run"]["status"] == "imported" and len(exported["points"]) == sum(map(len, series.values()))
    # Tagged like any run, compared beside a native run, then deleted.
    tagged = live_server.api("PATCH", f"/api/runs/{run_id}", json={"tags": ["from-trl"]})
    assert tagged.status_code == 200 and tagged.json()["tags"] == ["from-trl"]
    native = live_server.api("POST", "/api/runs", params={"launch": "false"}, json={"name": "native", "max_steps": 5})
    assert native.status_code == 201, native.text
    both = f"{run_id},{native.json()['id']}"
    compare = live_server.api("GET", "/compare", params={"runs": both})
    assert compare.status_code == 200 and f'data-run-ids="{both}"' in compare.text and 'id="chart-loss"' in compare.text
    assert live_server.api("DELETE", f"/api/runs/{run_id}").status_code == 204
    assert live_server.api("GET", f"/api/runs/{run_id}").status_code == 404
    assert_no_server_tracebacks(live_server)


def test_a_checkpoint_saved_by_trls_orpo_trainer_imports_every_logged_value(live_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("trl", reason="the fixture is written by TRL's ORPOTrainer (the [test] extra)")
    steps = 12
    checkpoint = write_trl_checkpoint(tmp_path / "trl-orpo", steps=steps)
    run_id = _run_id(_import(live_server, checkpoint))
    run = live_server.api("GET", f"/api/runs/{run_id}").json()
    assert run["status"] == "imported" and run["name"] == f"trl-orpo checkpoint-{steps}"
    assert run["config"]["max_steps"] == steps and run["config"]["batch_size"] == 4 and run["config"]["eval_every"] == 6
    assert run["last_step"] == steps

    history = json.loads((checkpoint / "trainer_state.json").read_text())["log_history"]
    series = _series(live_server, run_id)
    # TRL's name -> ours and the sign (docs/metrics.md), for what ORPOTrainer logs at train and at eval time.
    mapping = {"loss": ("loss", 1), "nll_loss": ("nll_loss", 1), "log_odds_ratio": ("or_loss", -1),
               "log_odds_chosen": ("log_odds_ratio", 1), "rewards/accuracies": ("accuracy", 1),
               "logps/chosen": ("logps_chosen", 1), "logps/rejected": ("logps_rejected", 1),
               "grad_norm": ("grad_norm", 1), "learning_rate": ("learning_rate", 1),
               "eval_loss": ("eval/loss", 1), "eval_nll_loss": ("eval/nll_loss", 1), "eval_log_odds_ratio": ("eval/or_loss", -1)}
    for theirs, (ours, sign) in mapping.items():
        logged = [(row["step"], sign * row[theirs]) for row in history if theirs in row]
        assert logged and series[ours] == logged, theirs
    assert len(series["loss"]) == steps and len(series["eval/loss"]) == 2
    assert_no_server_tracebacks(live_server)


def test_our_json_export_imports_back_with_its_config_and_points(live_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    first = _run_id(_import(live_server, write_trainer_state(tmp_path / "run", steps=30)))
    export = tmp_path / "exported.json"
    export.write_bytes(live_server.api("GET", f"/api/runs/{first}/export", params={"format": "json"}).content)
    again = _run_id(_import(live_server, export, "--name", "round trip"))
    assert again != first
    run = live_server.api("GET", f"/api/runs/{again}").json()
    assert run["name"] == "round trip"
    assert run["config"]["max_steps"] == 30
    assert run["config"]["imported_from"] == {"format": "metrics_file", "file": "exported.json"}
    assert _series(live_server, again) == _series(live_server, first)


def test_tensorboard_events_import_with_the_values_logged(live_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("tensorboard", reason='the [import] extra: pip install "orpo-dash[import]"')
    import numpy as np

    logged = write_tensorboard(tmp_path / "runs" / "tb-run")
    run_id = _run_id(_import(live_server, tmp_path / "runs" / "tb-run"))
    run = live_server.api("GET", f"/api/runs/{run_id}").json()
    assert run["status"] == "imported" and run["name"] == "tb-run"
    assert run["config"]["imported_from"]["format"] == "tensorboard"
    series = _series(live_server, run_id)
    # TensorBoard stores float32: compare with what float32 made of the logged values.
    as_stored = {tag: [(step, float(np.float32(value))) for step, value in points] for tag, points in logged.items()}
    assert series["loss"] == as_stored["train/loss"]
    assert series["or_loss"] == [(step, -value) for step, value in as_stored["train/log_odds_ratio"]]
    assert series["log_odds_ratio"] == as_stored["train/log_odds_chosen"]
    assert series["learning_rate"] == as_stored["train/learning_rate"]
    assert series["eval/loss"] == as_stored["eval/loss"]
    assert run["started_at"] and run["finished_at"]  # the event files' wall times


def test_a_broken_file_is_refused_naming_the_line_and_the_format_expected(live_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    broken = tmp_path / "metrics.jsonl"
    broken.write_text('{"step": 1, "loss": 0.7}\n{"step": 2, "loss": 0.6\n{"step": 3, "loss": 0.5}\n')
    done = _import(live_server, broken)
    assert done.returncode == 2
    assert "metrics.jsonl: line 2 is not valid JSON" in done.stderr
    assert 'expected one JSON object per line, e.g. {"step": 12, "loss": 0.71}' in done.stderr

    table = tmp_path / "history.csv"
    table.write_text("step,loss\n1,0.7\n2,0.6,9\n3,0.5\n")
    done = _import(live_server, table)
    assert done.returncode == 2 and "history.csv: line 3 has 3 cells, the header has 2 columns" in done.stderr

    neither = tmp_path / "notes.txt"
    neither.write_text("hello\nworld\n")
    done = _import(live_server, neither)
    assert done.returncode == 2 and "not JSONL, and not a CSV with a 'step'" in done.stderr
    assert "expected a TRL/Hugging Face trainer_state.json" in done.stderr

    empty_folder = tmp_path / "empty"
    empty_folder.mkdir()
    done = _import(live_server, empty_folder)
    assert done.returncode == 2 and "no trainer_state.json, no TensorBoard event file" in done.stderr
    assert live_server.api("GET", "/api/runs").json() == []  # nothing half-made
    assert_no_server_tracebacks(live_server)


def test_import_needs_the_member_role_with_auth_on(auth_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    folder = write_trainer_state(tmp_path / "run", steps=5)
    done = _import(auth_server, folder)
    assert done.returncode == 1 and "requires a login" in done.stderr and "--token" in done.stderr
    body = (folder / "trainer_state.json").read_bytes()
    refused = auth_server.api("POST", "/api/imports", params={"filename": "trainer_state.json"}, content=body)
    assert refused.status_code == 401


def test_import_help_documents_each_source() -> None:
    done = subprocess.run([sys.executable, "-m", "orpo_dash.cli", "import", "--help"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    for source in ("trainer_state.json", "--metrics-out", "Export CSV", "events.out.tfevents", "--token", "orpo-dash[import]",
                   "wandb/run-*", "_step", "mlruns/", "--mlflow-run"):
        assert source in done.stdout, source
    json.dumps(done.stdout)


def _expected_from_trl(series, steps: int = STEPS) -> None:  # type: ignore[no-untyped-def]
    """The run's series hold exactly what TRL logged (tests.import_fixtures.trl_logs), under our names."""
    logged = {step: trl_logs(step) for step in range(1, steps + 1)}
    expected = {"loss": ("loss", 1), "nll_loss": ("nll_loss", 1), "or_loss": ("log_odds_ratio", -1),
                "log_odds_ratio": ("log_odds_chosen", 1), "accuracy": ("rewards/accuracies", 1),
                "logps_chosen": ("logps/chosen", 1), "logps_rejected": ("logps/rejected", 1),
                "grad_norm": ("grad_norm", 1), "learning_rate": ("learning_rate", 1)}
    for ours, (theirs, sign) in expected.items():
        assert series[ours] == [(step, sign * logged[step][theirs]) for step in range(1, steps + 1)], ours
    assert series["eval/loss"] == [(step, 1.5 - step / 1000) for step in range(20, steps + 1, 20)]
    assert series["eval/or_loss"] == [(step, 0.4) for step in range(20, steps + 1, 20)]


def test_an_offline_wandb_run_imports_with_its_config_values_and_alerts(live_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("wandb", reason='the [import] extra: pip install "orpo-dash[import]"')
    wandb_dir = write_wandb_run(tmp_path / "project")
    run_id = _run_id(_import(live_server, wandb_dir))  # the wandb/ folder: its latest run's run-<id>.wandb
    run = live_server.api("GET", f"/api/runs/{run_id}").json()
    assert run["status"] == "imported" and run["name"] == "orpo-beta10"
    config = run["config"]
    assert config["imported_from"]["format"] == "wandb" and config["imported_from"]["file"].endswith(".wandb")
    # The Hugging Face arguments the WandbCallback logged as the run's config, under our field names.
    assert config["model"] == "HuggingFaceTB/SmolLM2-135M" and config["beta"] == 10.0
    assert config["learning_rate"] == 8e-6 and config["max_steps"] == STEPS and config["batch_size"] == 8
    assert config["eval_every"] == 20 and config["seed"] == 7
    assert run["last_step"] == STEPS and run["started_at"] and run["finished_at"]  # wall times from _timestamp
    # Steps are the trainer's (train/global_step), not W&B's _step, which also counted the eval log calls.
    _expected_from_trl(_series(live_server, run_id))
    assert "over_penalization" in {alert["kind"] for alert in run["alerts"]}
    # A W&B config is not a whole config of ours: advice names no change it cannot know is right.
    assert all(alert["suggested_change"] is None for alert in run["alerts"])
    assert_no_server_tracebacks(live_server)


def test_wandb_history_exports_import_with_the_run_files_values(live_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("wandb", reason='the [import] extra: pip install "orpo-dash[import]"')
    from orpo_dash.run_import import find_run_file

    wandb_file = find_run_file(write_wandb_run(tmp_path / "project"))
    exports = write_wandb_exports(wandb_history_rows(wandb_file), tmp_path / "exports")
    from_file = _series(live_server, _run_id(_import(live_server, wandb_file)))
    for kind, path in exports.items():
        run_id = _run_id(_import(live_server, path))
        run = live_server.api("GET", f"/api/runs/{run_id}").json()
        assert run["config"]["imported_from"] == {"format": "wandb_history", "file": path.name}, kind
        assert run["started_at"] and run["finished_at"], kind
        assert _series(live_server, run_id) == from_file, kind
    _expected_from_trl(from_file)
    # The same file posted to the API directly (what the Import page does).
    posted = live_server.api("POST", "/api/imports", params={"filename": exports["csv"].name, "name": "from the UI"},
                             content=exports["csv"].read_bytes())
    assert posted.status_code == 201, posted.text
    assert _series(live_server, posted.json()["id"]) == from_file


def test_broken_wandb_files_are_refused_naming_what_is_wrong(live_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("wandb", reason='the [import] extra: pip install "orpo-dash[import]"')
    foreign = tmp_path / "run-abc123.wandb"
    foreign.write_text("step,loss\n1,0.5\n")
    done = _import(live_server, foreign)
    assert done.returncode == 2, done.stderr
    assert "run-abc123.wandb: not a readable W&B run file (it does not start with W&B's datastore header" in done.stderr
    assert "expected the run-<id>.wandb file of a wandb/run-* or wandb/offline-run-* folder" in done.stderr

    no_step = tmp_path / "history.csv"
    no_step.write_text("_step,_runtime,_timestamp,train/loss\n0,1.0,1700000000,0.7\n,2.0,1700000001,0.6\n")
    done = _import(live_server, no_step)
    assert done.returncode == 2
    assert "history.csv: row 3 has no step (neither 'train/global_step' nor '_step' holds a whole number)" in done.stderr
    assert "expected W&B's history export" in done.stderr

    ragged = tmp_path / "export.csv"
    ragged.write_text("_step,_runtime,train/loss\n0,1.0,0.7\n1,2.0\n2,3.0,0.5\n")
    done = _import(live_server, ragged)
    assert done.returncode == 2 and "export.csv: line 3 has 2 cells, the header has 3 columns" in done.stderr

    empty_wandb = tmp_path / "wandb"
    (empty_wandb / "offline-run-20240101_000000-abc").mkdir(parents=True)
    done = _import(live_server, empty_wandb)
    assert done.returncode == 2 and "no W&B run (run-<id>.wandb)" in done.stderr
    assert live_server.api("GET", "/api/runs").json() == []
    assert_no_server_tracebacks(live_server)


RECORDED_MLFLOW = REPO_ROOT / "tests" / "recorded" / "mlflow_rest_run.json"


class _RecordedMLflow:
    """A small real HTTP server answering MLflow's REST API with a real server's recorded answers
    (tests/recorded/record_mlflow.py says how they were made and why not a live `mlflow server`)."""

    def __init__(self) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import parse_qs, urlsplit

        recorded = json.loads(RECORDED_MLFLOW.read_text())
        self.run_id: str = recorded["run_id"]
        self.requests: list[str] = []
        requests = self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                requests.append(self.path)
                parts = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                status, body = 404, {"error_code": "ENDPOINT_NOT_FOUND", "message": "no such endpoint"}
                if parts.path == "/api/2.0/mlflow/runs/get":
                    if query.get("run_id") == recorded["run_id"]:
                        status, body = 200, recorded["runs/get"]
                    else:
                        status, body = recorded["runs/get missing"]["status"], recorded["runs/get missing"]["body"]
                elif parts.path == "/api/2.0/mlflow/metrics/get-history" and query.get("run_id") == recorded["run_id"]:
                    pages = recorded["metrics/get-history"].get(query.get("metric_key"), [{}])
                    tokens = [None] + [page.get("next_page_token") for page in pages[:-1]]
                    if query.get("page_token") in tokens:
                        status, body = 200, pages[tokens.index(query.get("page_token"))]
                    else:
                        status, body = 400, {"error_code": "INVALID_PARAMETER_VALUE", "message": "bad page_token"}
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def recorded_mlflow():  # type: ignore[no-untyped-def]
    server = _RecordedMLflow()
    yield server
    server.close()


def _check_mlflow_run(server, run_id: int, file_name: str) -> None:  # type: ignore[no-untyped-def]
    run = server.api("GET", f"/api/runs/{run_id}").json()
    assert run["status"] == "imported" and run["name"] == "orpo-beta10"
    config = run["config"]
    assert config["imported_from"] == {"format": "mlflow", "file": file_name}
    # MLflowCallback's params (the Hugging Face arguments, strings in MLflow) under our field names.
    assert config["model"] == "HuggingFaceTB/SmolLM2-135M" and config["beta"] == 10.0
    assert config["learning_rate"] == 8e-6 and config["max_steps"] == STEPS and config["batch_size"] == 8
    assert config["eval_every"] == 20 and config["seed"] == 7
    assert run["last_step"] == STEPS and run["started_at"] and run["finished_at"]
    _expected_from_trl(_series(server, run_id))
    assert "over_penalization" in {alert["kind"] for alert in run["alerts"]}
    assert all(alert["suggested_change"] is None for alert in run["alerts"])


def test_an_mlruns_folder_written_by_mlflow_imports_with_its_params_and_values(live_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("mlflow", reason="the fixture is written by the mlflow client (the [test] extra)")
    first = write_mlflow_run(f"file:{tmp_path / 'mlruns'}")
    newest = write_mlflow_run(f"file:{tmp_path / 'mlruns'}", steps=30)
    # The folder holds two runs: the newest is imported unless --mlflow-run names one.
    done = _import(live_server, tmp_path / "mlruns")
    assert f"2 MLflow runs in {tmp_path / 'mlruns'}; importing the newest, {newest}" in done.stderr
    assert live_server.api("GET", f"/api/runs/{_run_id(done)}").json()["last_step"] == 30
    run_id = _run_id(_import(live_server, tmp_path / "mlruns", "--mlflow-run", first))
    _check_mlflow_run(live_server, run_id, f"mlflow-run-{first}.json")
    # A run folder itself imports the same values.
    (run_folder,) = (tmp_path / "mlruns").glob(f"*/{first}")
    assert _series(live_server, _run_id(_import(live_server, run_folder))) == _series(live_server, run_id)
    assert_no_server_tracebacks(live_server)


def test_an_mlflow_server_run_imports_through_its_rest_api(live_server, recorded_mlflow) -> None:  # type: ignore[no-untyped-def]
    mlflow_run = recorded_mlflow.run_id
    run_id = _run_id(_import(live_server, recorded_mlflow.url, "--mlflow-run", mlflow_run))
    _check_mlflow_run(live_server, run_id, f"mlflow-run-{mlflow_run}.json")
    # Every history was read to its end, following the server's next_page_token (pages of 30 points).
    assert any("metric_key=loss" in path and "page_token=" in path for path in recorded_mlflow.requests)
    # A run's page URL, as copied from the MLflow UI, names the run itself.
    again = _run_id(_import(live_server, f"{recorded_mlflow.url}/#/experiments/1/runs/{mlflow_run}"))
    assert _series(live_server, again) == _series(live_server, run_id)
    assert_no_server_tracebacks(live_server)


def test_mlflow_sources_that_cannot_be_read_are_refused_naming_the_fix(live_server, recorded_mlflow, tmp_path) -> None:  # type: ignore[no-untyped-def]
    done = _import(live_server, recorded_mlflow.url, "--mlflow-run", "0" * 32)
    assert done.returncode == 2
    assert f"the MLflow server at {recorded_mlflow.url} has no run {'0' * 32}" in done.stderr and "--mlflow-run" in done.stderr

    done = _import(live_server, recorded_mlflow.url)
    assert done.returncode == 2 and "which MLflow run? Pass --mlflow-run RUN_ID" in done.stderr

    done = _import(live_server, live_server.url, "--mlflow-run", "abc")  # the dashboard is no MLflow server
    assert done.returncode == 2
    assert "did not answer like an MLflow tracking server's REST API (HTTP 404" in done.stderr
    assert "pass the server's address, e.g. http://HOST:5000" in done.stderr

    done = _import(live_server, "http://127.0.0.1:9/", "--mlflow-run", "abc")
    assert done.returncode == 2 and "could not reach the MLflow server at http://127.0.0.1:9" in done.stderr

    run = tmp_path / "mlruns" / "1" / "abc123"
    (run / "metrics").mkdir(parents=True)
    (run / "meta.yaml").write_text("run_id: abc123\nrun_name: broken\nexperiment_id: '1'\nstatus: 3\n")
    (run / "metrics" / "loss").write_text("1700000000000 0.7 1\n1700000000001 0,6 2\n")
    done = _import(live_server, tmp_path / "mlruns")
    assert done.returncode == 2
    assert "metrics/loss: line 2 is not an MLflow metric line: '1700000000001 0,6 2'" in done.stderr
    assert "expected '1700000000000 0.71 12' (timestamp in ms, value, step)" in done.stderr

    posted = live_server.api("POST", "/api/imports", params={"filename": "mlflow-run-x.json"},
                             content=b'{"mlflow_run": {"info": "?"}, "metric_history": []}')
    assert posted.status_code == 422
    assert "not an MLflow run as orpo-dash import writes it" in posted.json()["detail"]
    assert "orpo-dash import http://HOST:5000 --mlflow-run RUN_ID" in posted.json()["detail"]
    assert live_server.api("GET", "/api/runs").json() == []
    assert_no_server_tracebacks(live_server)


def test_a_live_mlflow_server_when_one_is_installed(live_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The REST path against a real `mlflow server`, when ORPO_DASH_TEST_MLFLOW names an `mlflow` executable
    of a full mlflow install (its own venv: it does not fit ours); CI runs the recorded answers above."""
    import os
    import shutil
    import time

    import httpx

    mlflow = os.environ.get("ORPO_DASH_TEST_MLFLOW")
    if not mlflow or not shutil.which(mlflow):
        pytest.skip("set ORPO_DASH_TEST_MLFLOW to a full mlflow install's `mlflow` executable to run a live server")
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([mlflow, "server", "--backend-store-uri", f"sqlite:///{tmp_path}/mlflow.db",
                               "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(1)
        mlflow_run = write_mlflow_run(url)
        run_id = _run_id(_import(live_server, url, "--mlflow-run", mlflow_run))
        _check_mlflow_run(live_server, run_id, f"mlflow-run-{mlflow_run}.json")
    finally:
        server.terminate()
        server.wait(timeout=30)
