"""`orpo-dash diagnose`: JSON output, exit codes, TRL-named CSV input, bad input."""

from __future__ import annotations

import json
import math

import numpy as np

from orpo_dash.diagnose_cli import main
from orpo_dash.diagnostics import load_metrics_file


def _write_jsonl(path, n=260, stuck=False, nan_at=None):
    rng = np.random.default_rng(0)
    with open(path, "w") as fh:
        for s in range(1, n + 1):
            nll = (3.6 if stuck else 0.9 + 2.8 * math.exp(-s / 50)) + rng.normal(0, 0.1)
            lor = (0.0 if stuck else 3 * (1 - math.exp(-s / 60))) + rng.normal(0, 0.2)
            row = {"step": s, "epoch": s / n, "loss": nll + 0.1 * math.log1p(math.exp(-lor)), "nll_loss": nll,
                   "log_odds_ratio": lor, "logps_chosen": -nll}
            if s == nan_at:
                row["loss"] = float("nan")
            fh.write(json.dumps(row) + "\n")
    return path


def test_healthy_file_exits_zero(tmp_path, capsys):
    assert main([str(_write_jsonl(tmp_path / "m.jsonl"))]) == 0
    assert "No pitfalls detected" in capsys.readouterr().out


def test_json_output_and_critical_exit(tmp_path, capsys):
    path = _write_jsonl(tmp_path / "m.jsonl", stuck=True, nan_at=200)
    assert main([str(path), "--json"]) == 1  # non-finite loss is critical
    alerts = json.loads(capsys.readouterr().out)
    by_kind = {a["kind"]: a for a in alerts}
    assert {"log_odds_flat", "format_not_learned", "non_finite"} <= set(by_kind)
    nf = by_kind["non_finite"]
    assert (nf["severity"], nf["onset_step"], nf["step"]) == ("critical", 200, 200)
    assert set(nf) == {"kind", "severity", "onset_step", "step", "message", "details", "advice", "closed_step"}
    flat = by_kind["log_odds_flat"]  # a plain sentence first, the statistics apart
    assert flat["message"].startswith("the log odds ratio has stayed near zero since step")
    assert "Mann-Kendall" not in flat["message"] and "Theil-Sen" not in flat["message"]
    assert "Theil-Sen change" in flat["details"] and "Mann-Kendall z=" in flat["details"]


def test_text_output_reads_the_sentence_then_its_statistics(tmp_path, capsys):
    main([str(_write_jsonl(tmp_path / "m.jsonl", stuck=True))])
    lines = capsys.readouterr().out.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("[") and "log_odds_flat" in line)
    assert lines[head + 1].startswith("    the log odds ratio has stayed near zero")
    assert lines[head + 2].startswith("    details: median ") and "Mann-Kendall" in lines[head + 2]
    assert lines[head + 3].startswith("    advice: ")


def test_threshold_override_on_command_line(tmp_path, capsys):
    path = _write_jsonl(tmp_path / "m.jsonl", stuck=True)
    main([str(path), "--json"])
    assert "log_odds_flat" in capsys.readouterr().out
    main([str(path), "--json", "--threshold", "lor_flat_level=-9", "--threshold", "min_step=1000"])
    assert json.loads(capsys.readouterr().out) == []


def test_bad_input_exits_two_with_a_clear_message(tmp_path, capsys):
    assert main([str(tmp_path / "missing.jsonl")]) == 2
    assert "not found" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"step": 1, "loss": 2}\n{oops\n')
    assert main([str(bad)]) == 2
    assert "line 2" in capsys.readouterr().err
    assert main([str(_write_jsonl(tmp_path / "m.jsonl")), "--threshold", "nope=1"]) == 2
    assert "unknown alert threshold" in capsys.readouterr().err
    assert main([str(tmp_path / "m.jsonl"), "--threshold", "window"]) == 2


def test_trl_csv_is_mapped_to_our_names(tmp_path):
    csv = tmp_path / "log_history.csv"
    lines = ["global_step,loss,nll_loss,log_odds_chosen,log_odds_ratio,rewards/accuracies,eval_nll_loss,run"]
    for s in range(1, 21):
        ev = f"{1.5:.2f}" if s % 10 == 0 else ""
        lines.append(f"{s},{2.0 - s * 0.01},{1.8},{0.1 * s},{-0.5},{0.6},{ev},demo")
    csv.write_text("\n".join(lines) + "\n")
    series = load_metrics_file(csv)
    assert series["log_odds_ratio"][2] == (3, 0.30000000000000004)
    assert series["or_loss"][0] == (1, 0.5)  # TRL's log_odds_ratio is minus the OR loss
    assert series["accuracy"][0] == (1, 0.6)
    assert series["eval/nll_loss"] == [(10, 1.5), (20, 1.5)]
    assert "run" not in series


def test_trl_csv_through_the_cli(tmp_path, capsys):
    csv = tmp_path / "log.csv"
    lines = ["step,loss,log_odds_chosen"] + [f"{s},{1.0},{'nan' if s == 5 else 0.1}" for s in range(1, 9)]
    csv.write_text("\n".join(lines) + "\n")
    assert main([str(csv), "--json"]) == 1
    (alert,) = json.loads(capsys.readouterr().out)
    assert (alert["kind"], alert["step"]) == ("non_finite", 5)


def test_trainer_nulls_are_non_finite_and_gzip_is_read(tmp_path, capsys):
    """Our trainer writes NaN/Inf as null (strict JSON); a gzipped log reads the same as the plain one."""
    import gzip

    rows = [{"step": 1, "loss": 1.0, "grad_norm": 0.5}, {"step": 2, "loss": None, "grad_norm": 0.4}]
    plain = tmp_path / "m.jsonl"
    plain.write_text("".join(json.dumps(r) + "\n" for r in rows))
    packed = tmp_path / "m.jsonl.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    series = load_metrics_file(plain)
    assert math.isnan(series["loss"][1][1]) and series["loss"][1][0] == 2
    assert load_metrics_file(packed).keys() == series.keys()
    assert main([str(packed), "--json"]) == 1  # NaN loss: a critical non_finite alert
    out = json.loads(capsys.readouterr().out)
    assert [(a["kind"], a["severity"], a["step"]) for a in out] == [("non_finite", "critical", 2)]


def test_a_trainer_state_json_as_the_hf_trainer_writes_it(tmp_path, capsys):
    """trainer_state.json is pretty-printed (one object over many lines, history under log_history),
    and Python's json writes a NaN loss as the NaN literal."""
    history = [{"step": s, "epoch": s / 10, "loss": math.nan if s == 7 else 1.0, "log_odds_chosen": 0.1 * s,
                "rewards/accuracies": 0.7} for s in range(1, 11)]
    state = tmp_path / "trainer_state.json"
    state.write_text(json.dumps({"global_step": 10, "log_history": history, "best_metric": None}, indent=2))
    assert load_metrics_file(state)["log_odds_ratio"][-1] == (10, 1.0)
    assert main([str(state), "--json"]) == 1
    (alert,) = json.loads(capsys.readouterr().out)
    assert (alert["kind"], alert["step"]) == ("non_finite", 7)
    # A JSONL file of one record is still one record, not a document to look inside.
    single = tmp_path / "one.jsonl"
    single.write_text(json.dumps({"step": 1, "loss": 1.0}) + "\n")
    assert load_metrics_file(single) == {"loss": [(1, 1.0)]}


def test_a_broken_dashboard_export_is_named_not_misread(tmp_path, capsys):
    export = tmp_path / "run-metrics.json"
    export.write_text(json.dumps({"run": {"id": 1}, "points": [{"step": 1, "name": "loss", "value": "high"}]}))
    assert main([str(export)]) == 2
    assert "point 1 has a non-numeric step or value" in capsys.readouterr().err


def test_an_export_of_several_runs_is_refused_by_name(tmp_path, capsys):
    """The runs list exports a selection as one file (CSV with run_id, JSON as a list of run exports)."""
    csv_export = tmp_path / "orpo-runs-3-7.csv"
    csv_export.write_text("run_id,step,name,value,time\n3,1,loss,1.0,0\n7,1,loss,2.0,0\n")
    json_export = tmp_path / "orpo-runs-3-7.json"
    json_export.write_text(json.dumps([{"run": {"id": i}, "points": [{"step": 1, "name": "loss", "value": 1.0}]}
                                       for i in (3, 7)]))
    for export in (csv_export, json_export):
        assert main([str(export)]) == 2
        assert "holds 2 runs (3, 7); diagnose one run at a time" in capsys.readouterr().err
    one = tmp_path / "orpo-runs-3.csv"
    one.write_text("run_id,step,name,value,time\n3,1,loss,1.0,0\n3,2,loss,,0\n")
    series = load_metrics_file(one)
    assert series["loss"][0] == (1, 1.0) and math.isnan(series["loss"][1][1]) and "run_id" not in series
