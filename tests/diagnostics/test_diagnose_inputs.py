"""`orpo-dash diagnose` on the files people have: other tools' names and NaN spellings, files still being
written, byte order marks, any key order, long files, short runs. Every file is written for real in a tmp dir;
TRL-named histories go through the Hugging Face Trainer's own writer (TrainerState.save_to_json)."""

from __future__ import annotations

import json
import math
import random
import tracemalloc

import numpy as np
import pytest

from orpo_dash.cli import main as cli_main
from orpo_dash.diagnose_cli import main
from orpo_dash.diagnostics import load_metrics_file
from orpo_dash.diagnostics.loading import MetricsStream


def _trl_history(n: int = 120, *, eval_every: int = 20) -> list[dict]:
    """What TRL's ORPOTrainer logs for a healthy run (trl/experimental/orpo/orpo_trainer.py), step by step,
    with the Hugging Face Trainer's eval records and end-of-training summary."""
    rng = np.random.default_rng(1)
    history: list[dict] = []
    for s in range(1, n + 1):
        log_odds = 2.5 * (1 - math.exp(-s / 30)) + rng.normal(0, 0.1)  # rises: preferences are learned
        nll = 0.9 + 2.0 * math.exp(-s / 40) + rng.normal(0, 0.05)
        ratio = -math.log1p(math.exp(-log_odds))  # mean log sigmoid(log odds): TRL's "log_odds_ratio", <= 0
        history.append({"step": s, "epoch": s / n, "loss": nll - 0.1 * ratio, "grad_norm": 1.0, "learning_rate": 5e-6,
                        "nll_loss": nll, "log_odds_ratio": ratio, "log_odds_chosen": log_odds,
                        "rewards/chosen": -0.1 * nll, "rewards/rejected": -0.1 * (nll + 0.2), "rewards/margins": 0.02,
                        "rewards/accuracies": 0.8, "logps/chosen": -nll, "logps/rejected": -nll - 0.2,
                        "logits/chosen": -1.5, "logits/rejected": -1.6})
        if s % eval_every == 0:
            history.append({"step": s, "epoch": s / n, "eval_loss": nll + 0.1, "eval_nll_loss": nll + 0.05,
                            "eval_log_odds_ratio": ratio, "eval_runtime": 1.2, "eval_samples_per_second": 40.0})
    history.append({"step": n, "epoch": 1.0, "train_loss": 1.2, "train_runtime": 60.0, "total_flos": 1e12,
                    "train_samples_per_second": 8.0, "train_steps_per_second": 2.0})
    return history


def _trainer_state(path, history: list[dict]):
    from transformers import TrainerState  # the real writer of trainer_state.json

    TrainerState(global_step=max(r["step"] for r in history), log_history=history).save_to_json(str(path))
    return path


def _alerts(capsys, *argv: str) -> tuple[int, list[dict]]:
    code = main([*argv, "--json"])
    out = capsys.readouterr().out
    return code, json.loads(out) if code != 2 else []


# ----- non-finite spellings -----
@pytest.mark.parametrize("word", ["NaN", "nan", "Infinity", "-Infinity", "inf"])
def test_non_finite_words_in_a_trl_history_open_the_critical_alert(tmp_path, capsys, word):
    history = _trl_history()
    history[30]["loss"] = word  # step 26's record (eval records sit between), as a string
    step = history[30]["step"]
    code, alerts = _alerts(capsys, str(_trainer_state(tmp_path / "trainer_state.json", history)))
    assert code == 1
    assert [(a["kind"], a["severity"], a["step"]) for a in alerts] == [("non_finite", "critical", step)]


def test_null_in_a_trl_history_is_non_finite_and_an_eval_record_is_not_missing_training_values(tmp_path, capsys):
    history = _trl_history()
    history[10]["nll_loss"] = None
    code, alerts = _alerts(capsys, str(_trainer_state(tmp_path / "trainer_state.json", history)))
    assert code == 1 and [(a["kind"], a["step"]) for a in alerts] == [("non_finite", history[10]["step"])]
    # A pandas export of the same history writes every column on every row, null where a record did not log it.
    history[10]["nll_loss"] = 1.0
    columns = sorted({k for r in history for k in r})
    rows = [{k: r.get(k) for k in columns} for r in history]
    wide = tmp_path / "log_history.jsonl"
    wide.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert _alerts(capsys, str(wide)) == (0, [])
    series = load_metrics_file(wide)
    assert series["eval/nll_loss"].steps.tolist() == [20, 40, 60, 80, 100, 120]
    assert not np.isnan(series["loss"].values).any()


def test_an_empty_csv_cell_is_non_finite_in_a_column_that_has_numbers(tmp_path, capsys):
    history = _trl_history(80)
    # As pandas writes the history: every column on every row (the summary record's train_runtime included).
    columns = ["step", "loss", "nll_loss", "log_odds_chosen", "log_odds_ratio", "eval_loss", "train_runtime", "run",
               "notes"]
    lines = [",".join(columns)]
    for r in history:
        cells = ["" if r.get(c) is None else str(r.get(c)) for c in columns[:-2]] + ["demo", "nan"]
        if r["step"] == 33 and "loss" in r:
            cells[1] = ""  # pandas writes a NaN as an empty cell
        lines.append(",".join(cells))
    path = tmp_path / "log.csv"
    path.write_text("\n".join(lines) + "\n")
    code, alerts = _alerts(capsys, str(path))
    assert code == 1 and [(a["kind"], a["step"]) for a in alerts] == [("non_finite", 33)]
    series = load_metrics_file(path)
    assert "run" not in series and "notes" not in series  # never a number: not a metric
    assert series["eval/loss"].steps.tolist() == [20, 40, 60, 80]  # empty in training rows: not logged there


# ----- files still being written, broken files -----
def test_a_truncated_last_line_is_skipped_with_a_note(tmp_path, capsys):
    rows = [json.dumps({"step": s, "loss": 1.0 / s, "log_odds_ratio": 0.1 * s, "or_loss": 0.6}) for s in range(1, 9)]
    path = tmp_path / "m.jsonl"
    path.write_text("\n".join(rows) + '\n{"step": 9, "loss": 0.1')
    assert main([str(path)]) == 0
    captured = capsys.readouterr()
    assert "line 9 (the last) is incomplete and was skipped" in captured.err
    assert load_metrics_file(path)["loss"].steps.tolist() == list(range(1, 9))
    csv_path = tmp_path / "m.csv"
    csv_path.write_text("step,loss,nll_loss\n1,1.0,0.9\n2,0.9,0.8\n3,0.8")
    notes: list[str] = []
    assert load_metrics_file(csv_path, notes=notes)["loss"].steps.tolist() == [1, 2]
    assert notes == ["line 4 (the last) has 2 of 3 cells and was skipped: a file still being written?"]


def test_a_bad_line_in_the_middle_is_refused_by_line_number_and_format(tmp_path, capsys):
    path = tmp_path / "m.jsonl"
    path.write_text('{"step": 1, "loss": 1.0}\n{"step": 2, "loss": 0.9\n{"step": 3, "loss": 0.8}\n')
    assert main([str(path)]) == 2
    err = capsys.readouterr().err
    assert "line 2 is not valid JSON" in err and "expected one JSON object per line" in err
    csv_path = tmp_path / "m.csv"
    csv_path.write_text("step,loss\n1,1.0\n2,0.9,7\n3,0.8\n")
    assert main([str(csv_path)]) == 2
    assert "line 3 has 3 cells, the header has 2 columns" in capsys.readouterr().err


# ----- byte order marks -----
def test_a_byte_order_mark_is_accepted_in_jsonl_json_and_csv(tmp_path):
    history = _trl_history(30)
    plain_state = _trainer_state(tmp_path / "trainer_state.json", history)
    jsonl = "".join(json.dumps(r) + "\n" for r in history)
    csv_text = "step,loss,nll_loss\n" + "".join(f"{r['step']},{r['loss']},{r['nll_loss']}\n" for r in history if "loss" in r)
    for name, text in (("m.jsonl", jsonl), ("state.json", plain_state.read_text()), ("m.csv", csv_text)):
        plain, marked = tmp_path / f"plain-{name}", tmp_path / f"bom-{name}"
        plain.write_text(text, encoding="utf-8")
        marked.write_text(text, encoding="utf-8-sig")  # writes the BOM, as Excel and PowerShell do
        assert marked.read_bytes().startswith(b"\xef\xbb\xbf")
        assert load_metrics_file(marked) == load_metrics_file(plain), name


# ----- names, one key at a time -----
def test_trl_log_odds_ratio_without_the_usual_companions_is_not_read_as_ours(tmp_path, capsys):
    """A healthy TRL run exported with a few of its columns: TRL's log_odds_ratio (<= 0, rising towards 0)
    read as our log odds ratio would look flat-to-negative and raise a false log_odds_flat."""
    keep = ("step", "epoch", "loss", "nll_loss", "log_odds_ratio", "rewards/chosen", "grad_norm")
    history = [{k: r[k] for k in keep} for r in _trl_history(200) if "log_odds_chosen" in r]
    path = _trainer_state(tmp_path / "trainer_state.json", history)
    assert _alerts(capsys, str(path)) == (0, [])
    assert load_metrics_file(path)["or_loss"][0][1] > 0  # TRL's value negated: our OR loss
    code, alerts = _alerts(capsys, str(path), "--source", "ours")  # what reading it as ours would do
    assert "log_odds_flat" in {a["kind"] for a in alerts}


def test_an_ambiguous_log_odds_ratio_is_resolved_by_its_sign_or_refused_with_the_flag_to_pass(tmp_path, capsys):
    ambiguous = tmp_path / "m.jsonl"
    ambiguous.write_text("".join(json.dumps({"step": s, "loss": 1.0, "log_odds_ratio": -0.5 + s / 100}) + "\n"
                                 for s in range(1, 40)))
    assert main([str(ambiguous)]) == 2
    err = capsys.readouterr().err
    assert "cannot tell whose 'log_odds_ratio' this is" in err and "Pass --source trl or --source ours" in err
    assert "or_loss" in load_metrics_file(ambiguous, source="trl")
    assert cli_main(["diagnose", str(ambiguous), "--source", "trl", "--json"]) == 0  # the `orpo-dash` entry point
    assert json.loads(capsys.readouterr().out) == []
    assert "log_odds_ratio" in load_metrics_file(ambiguous, source="ours")
    # One value above 0 and TRL's reading is impossible (a mean log sigmoid never is): ours, late as it comes.
    positive = tmp_path / "p.jsonl"
    positive.write_text(ambiguous.read_text() + json.dumps({"step": 60, "loss": 1.0, "log_odds_ratio": 0.2}) + "\n")
    notes: list[str] = []
    series = load_metrics_file(positive, notes=notes)
    assert series["log_odds_ratio"][0] == (1, -0.49) and "or_loss" not in series
    assert notes and "read the file twice" in notes[0]
    # TRL's names beside a positive log_odds_ratio contradict each other: refused, not guessed.
    mixed = tmp_path / "x.jsonl"
    mixed.write_text(positive.read_text() + json.dumps({"step": 61, "rewards/accuracies": 0.5}) + "\n")
    assert main([str(mixed)]) == 2
    assert "it is > 0 at step 60" in capsys.readouterr().err


# ----- key order -----
def test_the_order_of_keys_within_a_step_never_changes_the_output(tmp_path, capsys):
    rng = np.random.default_rng(0)
    rows = []
    for s in range(1, 201):
        nll = 3.6 + rng.normal(0, 0.1)
        row = {"step": s, "loss": nll + 0.07, "nll_loss": nll, "or_loss": 0.69, "log_odds_ratio": rng.normal(0, 0.2),
               "grad_norm": 1.0, "accuracy": 0.5, "learning_rate": 1e-5}
        if s == 150:
            row.update(grad_norm=None, accuracy=None, loss=None)  # a warning-level and a critical NaN together
        rows.append(row)
    shuffler = random.Random(3)
    outputs = []
    for i in range(4):
        path = tmp_path / f"m{i}.jsonl"
        lines = []
        for row in rows:
            items = list(row.items())
            shuffler.shuffle(items)
            lines.append(json.dumps(dict(items)))
        path.write_text("\n".join(lines) + "\n")
        outputs.append(_alerts(capsys, str(path)))
    assert all(out == outputs[0] for out in outputs)
    non_finite = [a for a in outputs[0][1] if a["kind"] == "non_finite"]
    assert [(a["severity"], a["step"]) for a in non_finite] == [("critical", 150)]  # no closed warning beside it
    assert non_finite[0]["message"].startswith("non-finite value: loss = nan")


# ----- size -----
def _long_file(path, steps: int) -> None:
    with open(path, "w") as fh:
        for s in range(1, steps + 1):
            fh.write(json.dumps({"step": s, "loss": 1.0 + 1 / s, "nll_loss": 0.9, "or_loss": 0.5, "log_odds_ratio": 0.8,
                                 "accuracy": 0.7, "logps_chosen": -1.0, "logps_rejected": -1.5, "margin": 0.5,
                                 "learning_rate": 1e-5, "grad_norm": 0.9}) + "\n")


def test_reading_memory_is_bounded_by_the_series_not_the_records(tmp_path):
    """tracemalloc peaks, as ratios: the arrays of load_metrics_file against the series' own size, and the
    stream `diagnose` feeds the engine against one float64 series (the file is 10,000 steps of 10 metrics).
    The engine keeps bounded windows of its own (orpo_dash/diagnostics/engine.py), not measured here."""
    steps = 10_000
    path = tmp_path / "long.jsonl"
    _long_file(path, steps)
    one_series = steps * 8
    tracemalloc.start()
    series = load_metrics_file(path)
    _, loaded_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    all_series = sum(s.steps.nbytes + s.values.nbytes for s in series.values())
    assert len(series) == 10 and all_series == steps * 10 * 16
    assert loaded_peak <= 2 * all_series, (loaded_peak, all_series)
    del series
    tracemalloc.start()
    count = sum(1 for _ in MetricsStream(path).points())
    _, streamed_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert count == steps * 10
    assert streamed_peak <= 2 * one_series, (streamed_peak, one_series)


# ----- short runs -----
def test_a_five_step_file_is_too_short_to_judge(tmp_path, capsys):
    path = tmp_path / "m.jsonl"
    path.write_text("".join(json.dumps({"step": s, "loss": 2.0, "log_odds_ratio": 0.0, "or_loss": 0.69}) + "\n"
                            for s in range(1, 6)))
    assert main([str(path)]) == 0
    out = capsys.readouterr().out
    assert "No pitfalls detected" not in out
    assert "Too short to judge: 5 logged steps (last step 5)" in out
    assert "need 40 logged points" in out and "start at step 60" in out
    assert main([str(path), "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out) == [] and "Too short to judge" in captured.err
