"""DashboardCallback: a real tiny `transformers.Trainer` streams into a real dashboard server."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from transformers import TrainerCallback

from tests.conftest import REPO_ROOT
from trainer.hf_callback import IN_MEMORY_DATASET, DashboardCallback, config_from_trainer, dashboard_metrics

SEQ_LEN = 16


class TokenDataset:
    """Fixed-length causal-LM rows (labels = input ids): all the plain Trainer needs."""

    def __init__(self, vocab_size: int, rows: int, seed: int) -> None:
        import torch

        generator = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(3, vocab_size, (rows, SEQ_LEN), generator=generator)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, Any]:
        import torch

        ids = self.ids[index]
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()}


def make_trainer(tmp_path: Path, callbacks: list[Any], *, max_steps: int, eval_steps: int | None = None) -> Any:
    from transformers import Trainer, TrainingArguments

    from tests.trainer.conftest import build_model, build_tokenizer

    vocab = len(build_tokenizer())
    args = TrainingArguments(
        output_dir=str(tmp_path / "out"), max_steps=max_steps, per_device_train_batch_size=2, learning_rate=1e-3,
        logging_steps=1, save_strategy="no", report_to=[], use_cpu=True, seed=0, disable_tqdm=True,
        eval_strategy="steps" if eval_steps else "no", eval_steps=eval_steps, per_device_eval_batch_size=2,
        dataloader_num_workers=0,
    )
    return Trainer(
        model=build_model(vocab), args=args, train_dataset=TokenDataset(vocab, 16, 0),
        eval_dataset=TokenDataset(vocab, 4, 1) if eval_steps else None, callbacks=callbacks,
    )


@pytest.mark.slow
def test_trainer_run_metrics_and_completion_reach_the_dashboard(live_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    metrics_file = tmp_path / "metrics.jsonl"
    callback = DashboardCallback(live_server.url, name="hf-plain", config={"dataset": "tiny-token-corpus"},
                                 metrics_out=metrics_file)
    trainer = make_trainer(tmp_path, [callback], max_steps=6, eval_steps=3)
    trainer.train()

    run = live_server.api("GET", f"/api/runs/{callback.run_id}").json()
    assert run["status"] == "completed" and run["error"] is None
    assert run["name"] == "hf-plain"
    assert run["total_steps"] == 6 and run["last_step"] == 6
    config = run["config"]
    assert config["dataset"] == "tiny-token-corpus"
    assert (config["learning_rate"], config["batch_size"], config["max_steps"], config["seed"]) == (1e-3, 2, 6, 0)

    series = live_server.api("GET", f"/api/runs/{callback.run_id}/metrics", params={"max_points": 1000}).json()["series"]
    train_logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    eval_logs = [entry for entry in trainer.state.log_history if "eval_loss" in entry]
    assert series["loss"]["step"] == [entry["step"] for entry in train_logs] == [1, 2, 3, 4, 5, 6]
    assert series["loss"]["value"] == pytest.approx([entry["loss"] for entry in train_logs])
    assert series["learning_rate"]["value"] == pytest.approx([entry["learning_rate"] for entry in train_logs])
    assert series["grad_norm"]["step"] == [1, 2, 3, 4, 5, 6]
    assert series["eval/loss"]["step"] == [3, 6]
    assert series["eval/loss"]["value"] == pytest.approx([entry["eval_loss"] for entry in eval_logs])
    assert "eval/runtime" in series
    assert not {"train_runtime", "train_loss", "eval_loss"} & set(series)  # the end summary is a log line, not a series
    # Machine load, sampled from on_step_end: the first step, then at most every system_metrics_seconds (2 s).
    assert series["sys/cpu_percent"]["step"][0] == 1 and series["sys/rss_mb"]["value"][0] > 50

    logs = [line["text"] for line in live_server.api("GET", f"/api/runs/{callback.run_id}/logs").json()]
    assert any(text.startswith("train summary:") for text in logs)
    lines = [json.loads(line) for line in metrics_file.read_text().splitlines()]
    assert [line["step"] for line in lines if "loss" in line] == [1, 2, 3, 4, 5, 6]


class StopFromDashboardAt(TrainerCallback):
    """Presses the dashboard's Stop at a step, then waits until the command reached the worker."""

    def __init__(self, server: Any, dashboard: DashboardCallback, step: int) -> None:
        self.server, self.dashboard, self.step = server, dashboard, step

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step != self.step:
            return
        streaming = self.dashboard.streaming
        assert streaming is not None and streaming.connected.wait(30), "the callback never connected"
        assert self.server.api("POST", f"/api/runs/{self.dashboard.run_id}/stop").status_code == 200
        deadline = time.monotonic() + 30
        while not streaming.stop_requested() and time.monotonic() < deadline:
            time.sleep(0.02)


@pytest.mark.slow
def test_dashboard_stop_ends_training_after_the_step_with_a_checkpoint(live_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    dashboard = DashboardCallback(live_server.url)
    trainer = make_trainer(tmp_path, [], max_steps=500)
    trainer.add_callback(StopFromDashboardAt(live_server, dashboard, step=3))
    trainer.add_callback(dashboard)  # after the stopper: it sees the command in the same step
    trainer.train()

    assert trainer.state.global_step == 3
    assert (tmp_path / "out" / "checkpoint-3").is_dir()
    run = live_server.api("GET", f"/api/runs/{dashboard.run_id}").json()
    assert run["status"] == "stopped"
    assert run["last_step"] == 3 and run["total_steps"] == 500


FAILING_SCRIPT = """
import sys
sys.path.insert(0, {repo!r})
from pathlib import Path
from transformers import TrainerCallback
from tests.trainer.test_hf_callback import make_trainer
from trainer.hf_callback import DashboardCallback

class Boom(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == 2:
            raise RuntimeError("out of memory (simulated)")

dashboard = DashboardCallback({url!r}, name="hf-crash")
make_trainer(Path({tmp!r}), [dashboard, Boom()], max_steps=50).train()
"""


@pytest.mark.slow
def test_an_exception_out_of_train_marks_the_run_failed(live_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    script = tmp_path / "crash.py"
    script.write_text(textwrap.dedent(FAILING_SCRIPT.format(repo=str(REPO_ROOT), url=live_server.url, tmp=str(tmp_path))))
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 1 and "out of memory (simulated)" in result.stderr

    [run] = [r for r in live_server.api("GET", "/api/runs").json() if r["name"] == "hf-crash"]
    assert run["status"] == "failed"
    assert run["error"] == "RuntimeError: out of memory (simulated)"
    assert run["last_step"] == 1  # step 2 raised in on_step_end, before the Trainer logged it
    logs = "\n".join(line["text"] for line in live_server.api("GET", f"/api/runs/{run['id']}/logs").json())
    assert "Traceback" in logs and "Boom" not in run["error"]


def test_trl_orpo_names_map_onto_ours() -> None:
    logs = {
        "loss": 1.5, "nll_loss": 1.2, "log_odds_ratio": -0.7, "log_odds_chosen": 0.4, "rewards/accuracies": 0.75,
        "logps/chosen": -1.0, "logps/rejected": -1.5, "eval_log_odds_chosen": 0.3, "eval_runtime": 0.2,
        "epoch": 0.5, "train_runtime": 12.0, "train_loss": 1.4,
    }
    assert dashboard_metrics(logs) == {
        "loss": 1.5, "nll_loss": 1.2, "or_loss": 0.7, "log_odds_ratio": 0.4, "accuracy": 0.75,
        "logps_chosen": -1.0, "logps_rejected": -1.5, "margin": 0.5, "eval/log_odds_ratio": 0.3,
        "eval/runtime": 0.2, "epoch": 0.5,
    }


def test_config_maps_trainer_arguments_and_orpo_fields(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from transformers import TrainingArguments

    class OrpoLikeArguments(TrainingArguments):  # what TRL's ORPOConfig adds, without needing TRL
        beta: float = 0.25
        max_length: int = 64
        max_prompt_length: int = 100  # not below max_length: the dashboard's config refuses the pair

    args = OrpoLikeArguments(output_dir=str(tmp_path), learning_rate=5e-6, per_device_train_batch_size=3, max_steps=40,
                             lr_scheduler_type="cosine", warmup_steps=5, report_to=[], use_cpu=True)
    with pytest.warns(UserWarning, match="max_length, max_prompt_length"):
        config = config_from_trainer(args, None, {"dataset": "org/prefs"})
    assert config["beta"] == 0.25 and "max_length" not in config and "max_prompt_length" not in config
    assert (config["learning_rate"], config["batch_size"], config["max_steps"]) == (5e-6, 3, 40)
    assert (config["lr_scheduler"], config["warmup_steps"], config["dataset"]) == ("cosine", 5, "org/prefs")
    assert config_from_trainer(TrainingArguments(output_dir=str(tmp_path), report_to=[]))["dataset"] == IN_MEMORY_DATASET


@pytest.mark.slow
def test_unreachable_dashboard_never_fails_training(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import free_port

    callback = DashboardCallback(f"http://127.0.0.1:{free_port()}")  # nobody listens there
    trainer = make_trainer(tmp_path, [callback], max_steps=3)
    trainer.train()
    assert trainer.state.global_step == 3
    [spill] = (tmp_path / "out").glob("orpo-dash-spill-*.jsonl")
    contents = [json.loads(line) for line in spill.read_text().splitlines()]
    assert contents[0]["type"] == "spill" and contents[0]["run_id"] is None  # `orpo-dash upload` registers it
    steps = sorted({point[0] for content in contents[1:] for point in content.get("points", []) if point[1] == "loss"})
    assert steps == [1, 2, 3]
