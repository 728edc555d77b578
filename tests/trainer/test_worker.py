"""`python -m trainer` entry point and the file/multi reporters."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from orpo_dash.protocol import RUN_CONFIG_ENV
from trainer.reporting import MetricsFileReporter, MultiReporter, NullReporter
from trainer.worker import load_config, main, parse_args


def test_main_trains_from_yaml_and_writes_metrics(make_config, tmp_path: Path) -> None:
    config = make_config(max_steps=2, eval_every=1)
    config_file = tmp_path / "run.yaml"
    config_file.write_text(yaml.safe_dump(config.model_dump()))
    metrics = tmp_path / "metrics.jsonl"
    assert main([str(config_file), "--metrics-out", str(metrics), "--quiet"]) == 0
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    train = [r for r in rows if "loss" in r]
    evals = [r for r in rows if "eval/loss" in r]
    assert [r["step"] for r in train] == [1, 2] and [r["step"] for r in evals] == [1, 2]
    assert train[0]["epoch"] == pytest.approx(2 / 9) and "learning_rate" in train[0]


def test_main_names_the_bad_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config_file = tmp_path / "run.json"
    config_file.write_text(json.dumps({"learning_rate": -1, "batch_sise": 4}))
    assert main([str(config_file), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "learning_rate must be greater than 0 (got -1)" in err
    assert "unknown field 'batch_sise': did you mean 'batch_size'?" in err


def test_main_exits_1_when_the_run_fails(make_config, tmp_path: Path) -> None:
    config_file = tmp_path / "run.yaml"
    config_file.write_text(yaml.safe_dump(make_config(dataset=str(tmp_path / "missing.csv")).model_dump()))
    assert main([str(config_file), "--quiet"]) == 1


def test_metrics_file_is_flat_strict_json(tmp_path: Path) -> None:
    reporter = MetricsFileReporter(tmp_path / "m.jsonl")
    reporter.metrics(3, {"loss": 1.5, "grad_norm": float("inf")})
    reporter.metrics(3, {"eval/loss": 1.7})
    reporter.close()
    lines = (tmp_path / "m.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == [{"step": 3, "loss": 1.5, "grad_norm": None}, {"step": 3, "eval/loss": 1.7}]


def test_multi_reporter_fans_out_and_stops_when_any_asks(recorder) -> None:
    a, b = recorder(stop_after=1), recorder()
    multi = MultiReporter(a, b, NullReporter())
    multi.metrics(1, {"loss": 2.0})
    multi.log("hello")
    multi.close()
    assert a.points == b.points == [(1, {"loss": 2.0})] and b.logs == ["hello"] and a.closed and b.closed
    assert multi.stop_requested() and not MultiReporter(b).stop_requested()


def test_server_flag_builds_the_streaming_reporter_lazily(make_config, recorder, tmp_path: Path, monkeypatch) -> None:
    import trainer.streaming

    made: list = []

    class FakeStreaming(recorder):
        def __init__(self, server_url, run_id, token, **kwargs):
            super().__init__()
            made.append(self)
            self.args = (server_url, run_id, token)
            self.output: list[tuple[str, str]] = []

        def output_line(self, stream: str, text: str) -> None:  # what OutputTee forwards
            self.output.append((stream, text))

    monkeypatch.setattr(trainer.streaming, "StreamingReporter", FakeStreaming)
    config_file = tmp_path / "run.json"
    config_file.write_text(make_config(max_steps=1, output_dir=None).model_dump_json())
    assert main([str(config_file), "--server", "http://x", "--run-id", "7", "--token", "t", "--quiet"]) == 0
    (streamer,) = made
    assert streamer.args == ("http://x", 7, "t") and streamer.closed
    assert [s[0] for s in streamer.statuses] == ["running", "completed"] and 1 in streamer.train()
    # The config's lr (1e-2) is far above fine-tuning rates: the advice reaches the dashboard's log tail.
    assert any(stream == "stderr" and text.startswith("advice (learning_rate)") for stream, text in streamer.output)


@pytest.mark.parametrize("how", ["environment", "flag"])
def test_the_worker_token_comes_from_the_environment_or_the_flag_even_when_it_starts_with_a_dash(
    how: str, make_config, recorder, tmp_path: Path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    import trainer.streaming
    from orpo_dash.protocol import WORKER_TOKEN_ENV

    made: list = []

    class FakeStreaming(recorder):
        def __init__(self, server_url, run_id, token, **kwargs):
            super().__init__()
            made.append(token)

        def output_line(self, stream: str, text: str) -> None:
            pass

    monkeypatch.setattr(trainer.streaming, "StreamingReporter", FakeStreaming)
    config_file = tmp_path / "run.json"
    config_file.write_text(make_config(max_steps=1, output_dir=None).model_dump_json())
    argv = [str(config_file), "--server", "http://x", "--run-id", "7", "--quiet"]
    if how == "environment":
        monkeypatch.setenv(WORKER_TOKEN_ENV, "-starts-with-a-dash")  # what the launcher does
    else:
        argv.append("--token=-starts-with-a-dash")
    assert main(argv) == 0
    assert made == ["-starts-with-a-dash"]


def test_a_worker_without_a_config_file_reads_it_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(RUN_CONFIG_ENV, raising=False)
    with pytest.raises(SystemExit):
        parse_args(["--server", "http://dash:8000"])
    monkeypatch.setenv(RUN_CONFIG_ENV, json.dumps({"max_steps": 3, "beta": 0.2}))
    assert parse_args(["--server", "http://dash:8000"]).config is None
    config = load_config(None)
    assert (config.max_steps, config.beta) == (3, 0.2)
    monkeypatch.setenv(RUN_CONFIG_ENV, json.dumps({"max_steps": 0}))
    with pytest.raises(ValueError, match=rf"\${RUN_CONFIG_ENV}: invalid run config"):
        load_config(None)
