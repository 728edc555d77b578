"""orpo_dash.run_import on its own: which file a folder stands for, and the TensorBoard reader as an
optional extra that names the command installing it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from orpo_dash.diagnostics.records import MetricsFileError
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
    # As if not installed: a module another test imported stays in sys.modules under its full name, and
    # `from wandb.proto.wandb_internal_pb2 import Record` would find it there without looking at `wandb`.
    for name in [m for m in sys.modules if m.startswith("wandb.")] + ["wandb", "wandb.proto.wandb_internal_pb2"]:
        monkeypatch.setitem(sys.modules, name, None)
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


RECORDED_WANDB = Path(__file__).parent / "recorded" / "wandb"


def _as_plain(run) -> dict:  # type: ignore[no-untyped-def]
    return {"name": run.name, "format": run.format, "config": run.config, "notes": run.notes,
            "series": {k: [[int(s), float(v)] for s, v in zip(x.steps.tolist(), x.values.tolist(), strict=True)]
                       for k, x in run.series.items()},
            "times": {k: t.tolist() for k, t in run.times.items()}}


def test_the_in_process_wandb_reader_reads_what_wandb_leet_read() -> None:
    # run-orpo-beta10.wandb: written by wandb 0.31 offline through transformers' WandbCallback
    # (tests.import_fixtures.write_wandb_run, 80 steps); .expected.json: what the former reader (wandb's own,
    # `wandb leet inspect --json` through the wandb-core binary) made of it, dumped before it was replaced.
    pytest.importorskip("wandb", reason='the [import] extra: pip install "orpo-dash[import]"')
    from orpo_dash.import_wandb import read_wandb_log

    expected = json.loads((RECORDED_WANDB / "run-orpo-beta10.expected.json").read_text())
    got = _as_plain(read_wandb_log(RECORDED_WANDB / "run-orpo-beta10.wandb"))
    assert got == expected
    assert len(got["series"]) == 12 and got["config"]["beta"] == 10.0 and got["name"] == "orpo-beta10"


@pytest.mark.parametrize("cut", [32768, 32768 + 20, -50])
def test_a_wandb_file_cut_short_reads_the_records_before_the_cut_with_a_note(tmp_path, cut: int) -> None:  # type: ignore[no-untyped-def]
    # A run still writing (or killed): the file ends inside a record. 32768: a message split across blocks whose
    # FIRST piece is whole and LAST piece missing; +20: inside that LAST piece; -50: inside the file's last record.
    pytest.importorskip("wandb", reason='the [import] extra: pip install "orpo-dash[import]"')
    from orpo_dash.import_wandb import read_wandb_log

    whole = (RECORDED_WANDB / "run-orpo-beta10.wandb").read_bytes()
    cut_file = tmp_path / "run-orpo-beta10.wandb"
    cut_file.write_bytes(whole[:cut])
    run = _as_plain(read_wandb_log(cut_file))
    expected = json.loads((RECORDED_WANDB / "run-orpo-beta10.expected.json").read_text())
    assert len(run["notes"]) == 1 and "the W&B run file ends inside a record (a run still writing, or stopped)" in run["notes"][0]
    assert f"of {len(whole[:cut]):,}" in run["notes"][0]
    if cut > 0:  # cut in the middle of the history: fewer points, none of them wrong
        assert 0 < len(run["series"]["loss"]) < len(expected["series"]["loss"])
    for key, points in run["series"].items():  # what was read is what the whole file holds, up to the cut
        assert points == expected["series"][key][:len(points)], key


def test_a_damaged_wandb_file_is_refused_naming_where(tmp_path) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("wandb", reason='the [import] extra: pip install "orpo-dash[import]"')
    from orpo_dash.import_wandb import read_wandb_log

    data = bytearray((RECORDED_WANDB / "run-orpo-beta10.wandb").read_bytes())
    data[40000] ^= 0xFF
    damaged = tmp_path / "run-x.wandb"
    damaged.write_bytes(bytes(data))
    with pytest.raises(MetricsFileError, match=r"run-x.wandb: not a readable W&B run file \(the record at byte \d+ fails "
                                               r"its checksum: the file is damaged there\)"):
        read_wandb_log(damaged)


def test_wandb_history_records_make_the_same_columns_as_exported_rows(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # The .wandb reader's numpy columns against the exports' row-by-row `_columns`, on rows a run can log:
    # keys in any order, a key missing from some rows, booleans, text, null, a numeric string, NaN/Infinity,
    # `_step` alone where train/global_step is absent, and a step logged twice (the later value wins).
    pytest.importorskip("wandb", reason='the [import] extra: pip install "orpo-dash[import]"')
    from wandb.proto.wandb_internal_pb2 import HistoryItem

    from orpo_dash.import_wandb import _columns, _History

    rows = [
        {"_step": 0, "_timestamp": 1.7e9, "train/global_step": 1, "train/loss": 0.7, "train/ok": True},
        {"train/loss": 0.6, "_timestamp": 1.7e9 + 1, "train/global_step": 2, "_step": 1, "train/ok": False},
        {"_step": 2, "_timestamp": 1.7e9 + 2, "train/global_step": 2, "train/loss": 0.5, "note": "text"},
        {"_step": 3, "_timestamp": 1.7e9 + 3, "eval/loss": float("nan"), "train/loss": None, "media": {"a": 1}},
        {"_step": 4, "train/loss": "0.25", "eval/loss": float("inf")},
    ]
    history = _History()
    for num, row in enumerate(rows, start=1):
        items = [HistoryItem(nested_key=[key], value_json=json.dumps(value)) for key, value in row.items()]
        history.add(num, items, tmp_path / "run-x.wandb")
    got = {k: (s.tolist(), v.tolist(), None if w is None else w.tolist())
           for k, (s, v, w) in history.columns(tmp_path / "run-x.wandb").items()}
    expected = _columns(enumerate(rows, start=1), tmp_path / "run-x.wandb")
    assert sorted(got) == sorted(expected) == ["eval/loss", "train/loss"]
    assert got["train/loss"] == expected["train/loss"] == ([1, 2, 2, 4], [0.7, 0.6, 0.5, 0.25], None)
    assert str(got["eval/loss"]) == str(expected["eval/loss"]) == "([3, 4], [nan, inf], None)"
