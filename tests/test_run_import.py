"""orpo_dash.run_import on its own: which file a folder stands for, and the TensorBoard reader as an
optional extra that names the command installing it."""

from __future__ import annotations

import sys

import pytest

from orpo_dash.run_import import RunImportError, find_run_file, read_run, suggested_name


def test_a_folder_of_checkpoints_stands_for_its_newest_trainer_state(tmp_path) -> None:  # type: ignore[no-untyped-def]
    for step in (100, 500):
        (tmp_path / "run" / f"checkpoint-{step}").mkdir(parents=True)
        (tmp_path / "run" / f"checkpoint-{step}" / "trainer_state.json").write_text('{"log_history": []}')
    found = find_run_file(tmp_path / "run")
    assert found == tmp_path / "run" / "checkpoint-500" / "trainer_state.json"
    assert suggested_name(found) == "run checkpoint-500"
    assert suggested_name(tmp_path / "metrics.jsonl.gz") == "metrics"


def test_tensorboard_files_without_the_package_name_the_install_command(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    events = tmp_path / "events.out.tfevents.1700000000.host.1.0"
    events.write_bytes(b"\x00" * 16)
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as if not installed: its import raises ImportError
    monkeypatch.setitem(sys.modules, "tensorboard.backend.event_processing", None)
    with pytest.raises(RunImportError, match=r'pip install "orpo-dash\[import\]"'):
        read_run(events)


def test_a_file_with_no_metrics_is_refused_naming_the_formats(tmp_path) -> None:  # type: ignore[no-untyped-def]
    state = tmp_path / "trainer_state.json"
    state.write_text('{"log_history": [{"step": 1, "note": "started"}]}')
    with pytest.raises(RunImportError, match="no numeric metrics found.*expected a TRL/Hugging Face trainer_state.json"):
        read_run(state, display_name="trainer_state.json")


def test_a_wandb_run_file_without_the_package_names_the_install_command(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    run_file = tmp_path / "run-abc123.wandb"
    run_file.write_bytes(b":W&B\x00\x01\x00" + b"\x00" * 16)
    monkeypatch.setitem(sys.modules, "wandb", None)  # as if not installed
    with pytest.raises(RunImportError, match=r'W&B run file; reading it needs the wandb package: pip install "orpo-dash\[import\]"'):
        read_run(run_file)


def test_a_wandb_chart_panel_csv_reads_its_series_not_its_sampling_bounds(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # A W&B chart panel's "Export CSV": Step, then per run the key and the chart's min/max sampling bounds.
    panel = tmp_path / "wandb_export_2024-05-01T10_00_00.csv"
    panel.write_text('"Step","orpo-beta10 - train/loss","orpo-beta10 - train/loss__MIN","orpo-beta10 - train/loss__MAX"\n'
                     '"1","0.9","0.8","1.0"\n"2","0.7","0.6","0.8"\n')
    run = read_run(panel)
    assert run.format == "wandb_history" and sorted(run.series) == ["loss"]
    assert list(run.series["loss"]) == [(1, 0.9), (2, 0.7)]
    assert run.times == {}  # a panel export has no wall times: the import's time is used
