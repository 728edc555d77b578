"""Issue 17 in a browser, every import format through the Import page: the over-penalized run (beta 10) as
each tool writes it is uploaded, and the run page opens with its charts drawn and its over_penalization alert
listed. Files are written by the tools themselves: our trainer's MetricsFileReporter, transformers'
TrainerState, TRL's ORPOTrainer, the dashboard's own Export buttons, torch's SummaryWriter, the mlflow client,
wandb offline."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from tests.import_fixtures import (
    tar_gz_folder,
    trl_logs,
    wandb_history_rows,
    write_mlflow_run,
    write_trainer_state,
    write_wandb_exports,
    write_wandb_run,
    zip_folder,
)
from tests.over_penalized import STEPS, over_penalized_metrics
from tests.pages.conftest import point_count

pytestmark = pytest.mark.browser


def _upload(page: Any, server: Any, file: Path, *, mlflow_run: str = "", steps: int = STEPS,
            alert: str | None = "over_penalization") -> dict:
    """Import `file` as a user does (Import page, choose, Import), wait for its run page, and check what a user
    sees there: the loss chart drawn at every step and (the over-penalized run) its alert listed."""
    page.goto(server.url + "/import")
    page.set_input_files("#import-file", str(file))
    if mlflow_run:
        page.fill("#import-mlflow-run", mlflow_run)
    page.click("#import-btn")
    page.wait_for_url("**/runs/*", timeout=60_000)
    run = server.api("GET", f"/api/runs/{int(page.url.rsplit('/', 1)[1])}").json()
    assert run["status"] == "imported", (file.name, run)
    page.wait_for_function("() => Number(document.querySelector('[data-metric-group=loss]').dataset.pointCount) > 0")
    assert point_count(page, "loss") >= 3 * steps, file.name  # loss, nll_loss and or_loss at every step
    assert point_count(page, "logps") >= 2 * steps, file.name
    if alert:
        page.locator(f"#alerts-list li[data-kind={alert}]").wait_for()
    return run


def test_logs_and_exports_import_through_the_page(live_server, page, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from trainer.reporting import MetricsFileReporter

    ours = tmp_path / "metrics.jsonl"
    reporter = MetricsFileReporter(ours)  # what `orpo-dash train --metrics-out` writes
    for step in range(1, STEPS + 1):
        reporter.metrics(step, over_penalized_metrics(step))
    reporter.close()
    # A TRL log history (TrainerState.log_history) as people save it: JSON lines, and CSV with TRL's names.
    history = json.loads((write_trainer_state(tmp_path / "trl") / "trainer_state.json").read_text())["log_history"]
    trl_jsonl = tmp_path / "log_history.jsonl"
    trl_jsonl.write_text("".join(json.dumps(row) + "\n" for row in history))
    trl_csv = tmp_path / "log_history.csv"
    with open(trl_csv, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=sorted({key for row in history for key in row}))
        writer.writeheader()
        writer.writerows(history)

    first = _upload(page, live_server, ours)
    assert first["config"]["imported_from"] == {"format": "metrics_file", "file": "metrics.jsonl"}
    for file in (trl_jsonl, trl_csv):
        run = _upload(page, live_server, file)
        assert run["config"]["imported_from"] == {"format": "metrics_file", "file": file.name}
        assert run["latest"]["or_loss"] == pytest.approx(-trl_logs(STEPS)["log_odds_ratio"])  # TRL's sign undone
    # The dashboard's own Export JSON and Export CSV of the first run, downloaded from its page's buttons.
    for fmt in ("json", "csv"):
        page.goto(f"{live_server.url}/runs/{first['id']}")
        with page.expect_download() as download:
            page.click(f"text=Export {fmt.upper()}")
        exported = tmp_path / download.value.suggested_filename
        download.value.save_as(exported)
        run = _upload(page, live_server, exported)
        assert run["config"]["imported_from"]["format"] == "metrics_file"
        assert run["latest"] == pytest.approx(first["latest"])


def test_tensorboard_events_and_folders_as_archives_import_through_the_page(live_server, page, tmp_path) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("tensorboard", reason='the [import] extra: pip install "orpo-dash[import]"')
    pytest.importorskip("mlflow", reason="the fixture is written by the mlflow client (the [test] extra)")
    from torch.utils.tensorboard import SummaryWriter

    # The Hugging Face Trainer's TensorBoard callback logs TRL's keys as train/<key>.
    writer = SummaryWriter(str(tmp_path / "runs" / "beta10"))
    for step in range(1, STEPS + 1):
        for key, value in trl_logs(step).items():
            writer.add_scalar(f"train/{key}", value, step)
    writer.close()
    (events,) = (tmp_path / "runs" / "beta10").glob("events.out.tfevents.*")
    run = _upload(page, live_server, events)
    assert run["config"]["imported_from"]["format"] == "tensorboard"

    run = _upload(page, live_server, tar_gz_folder(tmp_path / "runs", tmp_path / "runs.tar.gz"))  # the whole log dir
    assert run["name"] == "beta10" and run["config"]["imported_from"] == {"format": "tensorboard", "file": "runs.tar.gz"}

    checkpoint = write_trainer_state(tmp_path / "my-orpo" / f"checkpoint-{STEPS}", model="HuggingFaceTB/SmolLM2-135M")
    run = _upload(page, live_server, zip_folder(checkpoint.parent, tmp_path / "my-orpo.zip"))
    assert run["name"] == f"my-orpo checkpoint-{STEPS}" and run["config"]["model"] == "HuggingFaceTB/SmolLM2-135M"

    # A checkpoint folder as TRL's ORPOTrainer saved it (a short healthy run: charts, no alert expected).
    pytest.importorskip("trl", reason="the fixture is written by TRL's ORPOTrainer (the [test] extra)")
    from tests.import_fixtures import write_trl_checkpoint

    trl_checkpoint = write_trl_checkpoint(tmp_path / "trl-orpo", steps=12)
    run = _upload(page, live_server, zip_folder(trl_checkpoint, tmp_path / "trl-checkpoint.zip"), steps=12, alert=None)
    assert run["name"] == "checkpoint-12" and run["config"]["imported_from"]["format"] == "trainer_state"

    first = write_mlflow_run(f"file:{tmp_path / 'mlruns'}")
    write_mlflow_run(f"file:{tmp_path / 'mlruns'}", steps=30)
    run = _upload(page, live_server, zip_folder(tmp_path / "mlruns", tmp_path / "mlruns.zip"), mlflow_run=first)
    assert run["name"] == "orpo-beta10" and run["last_step"] == STEPS and run["config"]["beta"] == 10.0
    assert run["config"]["imported_from"] == {"format": "mlflow", "file": "mlruns.zip"}


def test_wandb_exports_and_run_folders_import_through_the_page(live_server, page, tmp_path) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("wandb", reason='the [import] extra: pip install "orpo-dash[import]"')
    from orpo_dash.run_import import find_run_file

    wandb_folder = write_wandb_run(tmp_path / "project")
    exports = write_wandb_exports(wandb_history_rows(find_run_file(wandb_folder)), tmp_path / "exports")
    for kind in ("csv", "json", "jsonl"):
        run = _upload(page, live_server, exports[kind])
        assert run["config"]["imported_from"] == {"format": "wandb_history", "file": exports[kind].name}, kind
        assert run["name"] == exports[kind].stem, kind
    run = _upload(page, live_server, find_run_file(wandb_folder))  # the run-<id>.wandb file itself
    assert run["name"] == "orpo-beta10" and run["config"]["imported_from"]["format"] == "wandb"
    run = _upload(page, live_server, zip_folder(wandb_folder, tmp_path / "wandb.zip"))
    assert run["name"] == "orpo-beta10" and run["config"]["imported_from"] == {"format": "wandb", "file": "wandb.zip"}
    assert run["config"]["beta"] == 10.0
