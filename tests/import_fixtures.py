"""Files of runs made elsewhere, written by the real tools: TRL's ORPOTrainer saving a checkpoint of a tiny
model, transformers' TrainerState (what the Hugging Face Trainer saves as trainer_state.json in every checkpoint
folder), TensorBoard's SummaryWriter (torch's), transformers' W&B and MLflow callbacks through wandb and mlflow.
TRL's ORPOTrainer logs under its own names; tests/over_penalized.py's run (a pitfall the alert engine
catches) is logged here under them."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from tests.over_penalized import STEPS, over_penalized_metrics


def trl_logs(step: int) -> dict[str, float]:
    """One TRL ORPOTrainer log record (trl/experimental/orpo/orpo_trainer.py, get_batch_loss_metrics) of
    the over-penalized run: its log_odds_ratio is minus our or_loss, its log_odds_chosen our log odds ratio."""
    ours = over_penalized_metrics(step)
    return {"loss": ours["loss"], "nll_loss": ours["nll_loss"], "log_odds_ratio": -ours["or_loss"],
            "log_odds_chosen": ours["log_odds_ratio"], "rewards/accuracies": ours["accuracy"],
            "logps/chosen": ours["logps_chosen"], "logps/rejected": ours["logps_rejected"],
            "grad_norm": ours["grad_norm"], "learning_rate": ours["learning_rate"], "epoch": step / STEPS}


def write_trainer_state(folder: Path, *, steps: int = STEPS, model: str | None = None) -> Path:
    """A checkpoint folder as the Hugging Face Trainer leaves it: trainer_state.json (by TrainerState
    itself) and, with `model`, the model's config.json naming it. Returns the folder."""
    from transformers import TrainerState

    folder.mkdir(parents=True, exist_ok=True)
    state = TrainerState(max_steps=steps, num_train_epochs=1, train_batch_size=8, logging_steps=1, eval_steps=20,
                         global_step=steps)
    for step in range(1, steps + 1):
        state.log_history.append({**trl_logs(step), "step": step})
        if step % 20 == 0:
            state.log_history.append({"eval_loss": 1.5 - step / 1000, "eval_log_odds_ratio": -0.4, "epoch": step / steps,
                                      "step": step})
    state.save_to_json(str(folder / "trainer_state.json"))
    if model:
        (folder / "config.json").write_text(json.dumps({"_name_or_path": model, "model_type": "llama"}))
    return folder


def write_tensorboard(folder: Path, steps: int = 30) -> dict[str, list[tuple[int, float]]]:
    """Scalars as the Hugging Face Trainer's TensorBoard callback names them (train/..., eval/...), through
    torch's SummaryWriter. Returns what was logged, per tag."""
    from torch.utils.tensorboard import SummaryWriter

    logged: dict[str, list[tuple[int, float]]] = {}
    writer = SummaryWriter(str(folder))
    for step in range(1, steps + 1):
        scalars = {"train/loss": 2.0 - step * 0.01, "train/log_odds_ratio": -0.69 + step * 0.005,
                   "train/log_odds_chosen": step * 0.02, "train/learning_rate": 2e-5 * math.cos(step / steps)}
        if step % 10 == 0:
            scalars["eval/loss"] = 1.9 - step * 0.01
        for tag, value in scalars.items():
            writer.add_scalar(tag, value, step)
            logged.setdefault(tag, []).append((step, value))
    writer.close()
    return logged


def write_wandb_run(root: Path, *, steps: int = STEPS, model: str = "HuggingFaceTB/SmolLM2-135M") -> Path:
    """An offline W&B run as a TRL run leaves it: transformers' own WandbCallback (which renames TRL's keys
    train/X and eval/X and logs train/global_step) writing through wandb in offline mode, in a subprocess (wandb
    starts its service process). The over-penalized run at beta 10, evaluated every 20 steps. Returns the
    `wandb/` folder (root/wandb)."""
    import os
    import subprocess
    import sys

    root.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_DIR": str(root), "WANDB_SILENT": "true",
           "WANDB_CONFIG_DIR": str(root / ".config"), "WANDB_CACHE_DIR": str(root / ".cache"),
           "WANDB_ERROR_REPORTING": "false", "WANDB_PROJECT": "orpo"}
    code = f"from tests.import_fixtures import _log_to_wandb; _log_to_wandb({str(root)!r}, {steps}, {model!r})"
    from tests.conftest import REPO_ROOT

    subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env, check=True, timeout=300)
    return root / "wandb"


def _orpo_arguments(steps: int, *, report_to: str):  # type: ignore[no-untyped-def]
    """Training arguments as TRL's ORPOConfig has them (a TrainingArguments with beta), which the W&B and
    MLflow callbacks log as the run's config / params."""
    from dataclasses import dataclass

    from transformers import TrainingArguments

    @dataclass
    class ORPOArguments(TrainingArguments):
        beta: float = 0.1

    return ORPOArguments(output_dir="/tmp/orpo-dash-fixture-out", report_to=[report_to], run_name="orpo-beta10",
                         max_steps=steps, learning_rate=8e-6, per_device_train_batch_size=8, logging_steps=1,
                         eval_steps=20, eval_strategy="steps", seed=7, beta=10.0)


def _log_to_wandb(root: str, steps: int, model: str) -> None:
    from transformers import PretrainedConfig, TrainerControl, TrainerState
    from transformers.integrations import WandbCallback

    class _Model:  # what WandbCallback.setup reads of a model: its config (logged with the arguments)
        config = PretrainedConfig(name_or_path=model)

        def num_parameters(self) -> int:
            return 135_000_000

    args = _orpo_arguments(steps, report_to="wandb")
    callback, state, control = WandbCallback(), TrainerState(max_steps=steps), TrainerControl()
    callback.setup(args, state, _Model())
    _log_training(callback, args, state, control, steps)
    callback.on_log(args, state, control, logs={"train_runtime": 12.5, "train_loss": 1.2, "total_flos": 1e12})
    callback._wandb.finish()


def wandb_history_rows(wandb_file: Path) -> list[dict]:
    """The history rows of a .wandb file as W&B's API returns them (run.scan_history(): one dict per
    wandb.log call with _step, _runtime, _timestamp and the keys logged), read by wandb's own reader."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_ERROR_REPORTING": "false", "WANDB_SILENT": "true"}
    done = subprocess.run([sys.executable, "-m", "wandb", "leet", "inspect", "--json", str(wandb_file)], env=env,
                          capture_output=True, text=True, check=True, timeout=120)
    records = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    return [r["history"]["item"] for r in records if r.get("type") == "history"]


def write_wandb_exports(rows: list[dict], folder: Path) -> dict[str, Path]:
    """The history as W&B exports it: the UI's Export CSV (one column per key, W&B's own columns first, an
    empty cell where a row did not log the key), the API's rows as JSONL (scan_history) and as one JSON list
    (run.history() written with pandas' to_json(orient="records"): null where a row did not log the key)."""
    import csv

    folder.mkdir(parents=True, exist_ok=True)
    keys = ["_step", "_runtime", "_timestamp"] + sorted({k for row in rows for k in row} - {"_step", "_runtime", "_timestamp"})
    paths = {"csv": folder / "wandb_export_history.csv", "jsonl": folder / "history.jsonl", "json": folder / "history.json"}
    with open(paths["csv"], "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    paths["jsonl"].write_text("".join(json.dumps(row) + "\n" for row in rows))
    paths["json"].write_text(json.dumps([{k: row.get(k) for k in keys} for row in rows]))
    return paths


def write_mlflow_run(tracking_uri: str, *, steps: int = STEPS, model: str = "HuggingFaceTB/SmolLM2-135M") -> str:
    """An MLflow run as a TRL run leaves it: transformers' own MLflowCallback (TRL's keys as they are, eval_X,
    at step train/global_step; the Hugging Face arguments and the model's config as params) logging through the
    real mlflow client to `tracking_uri` (a file store `file:/.../mlruns`, or a tracking server's URL), in a
    subprocess. The over-penalized run at beta 10, evaluated every 20 steps. Returns the run's id."""
    import os
    import subprocess
    import sys

    from tests.conftest import REPO_ROOT

    # MLflow 3.7+ refuses a new file store unless asked (it wants a database); old ones are what users export.
    # MLflowCallback logs asynchronously whatever MLFLOW_ENABLE_ASYNC_LOGGING says, and MLflow's worker threads
    # race to create a nested key's folder (rewards/, logps/): the loser's batch is dropped with "File exists",
    # so a step's values go missing at random. One worker thread keeps the run the test expects whole.
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "MLFLOW_ALLOW_FILE_STORE": "true",
           "MLFLOW_EXPERIMENT_NAME": "orpo", "HF_MLFLOW_LOG_ARTIFACTS": "0", "DISABLE_MLFLOW_INTEGRATION": "false",
           "MLFLOW_ENABLE_ASYNC_LOGGING": "false", "MLFLOW_ASYNC_LOGGING_THREADPOOL_SIZE": "1"}
    code = f"from tests.import_fixtures import _log_to_mlflow; print(_log_to_mlflow({steps}, {model!r}))"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env, check=True, timeout=300,
                          capture_output=True, text=True)
    return done.stdout.strip().splitlines()[-1]


def _log_to_mlflow(steps: int, model: str) -> str:
    from transformers import PretrainedConfig, TrainerControl, TrainerState
    from transformers.integrations import MLflowCallback

    args = _orpo_arguments(steps, report_to="mlflow")

    class _Model:  # what MLflowCallback.setup reads of a model: its config (logged with the arguments)
        config = PretrainedConfig(name_or_path=model)

    callback, state, control = MLflowCallback(), TrainerState(max_steps=steps, is_world_process_zero=True), TrainerControl()
    callback.setup(args, state, _Model())
    run_id = callback._ml_flow.active_run().info.run_id
    _log_training(callback, args, state, control, steps)
    callback.on_train_end(args, state, control)
    callback._ml_flow.end_run()
    return run_id


def _log_training(callback: Any, args: Any, state: Any, control: Any, steps: int) -> None:
    """What a Trainer logs through a logger callback for an ORPO run of `steps` steps: TRL's metrics every
    step, an evaluation every 20."""
    for step in range(1, steps + 1):
        state.global_step = step
        callback.on_log(args, state, control, logs=trl_logs(step))
        if step % 20 == 0:
            callback.on_log(args, state, control, logs={"eval_loss": 1.5 - step / 1000, "eval_log_odds_ratio": -0.4,
                                                        "epoch": step / steps})


def write_trl_checkpoint(output_dir: Path, *, steps: int = 12, seed: int = 3) -> Path:
    """A checkpoint folder written by TRL's ORPOTrainer itself: a tiny Llama built locally (2 layers, hidden 32)
    and a byte-level BPE tokenizer trained on the bundled preference set, trained for `steps` steps on it,
    logging every step and evaluating every steps/2, the Trainer saving checkpoint-<steps>/ (trainer_state.json
    beside the model's config.json) as it does in any run. In a subprocess, on one thread. Returns the
    checkpoint folder."""
    import subprocess
    import sys

    from tests.conftest import REPO_ROOT

    code = f"from tests.import_fixtures import _train_with_trl; _train_with_trl({str(output_dir)!r}, {steps}, {seed})"
    subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=True, timeout=600, capture_output=True)
    return output_dir / f"checkpoint-{steps}"


def _train_with_trl(output_dir: str, steps: int, seed: int) -> None:
    import torch
    from datasets import Dataset
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
    from trl.experimental.orpo import ORPOConfig, ORPOTrainer

    from tests.conftest import REPO_ROOT

    torch.set_num_threads(1)
    rows = [json.loads(line) for line in (REPO_ROOT / "orpo_dash" / "bundled" / "orpo_demo_prefs.jsonl").read_text().splitlines()
            if line.strip()][:120]
    pairs = [{key: row[key] for key in ("prompt", "chosen", "rejected")} for row in rows]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator([pair[key] for pair in pairs for key in pair], trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<|endoftext|>", "<|pad|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>", pad_token="<|pad|>")
    torch.manual_seed(seed)
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=4, max_position_embeddings=256, pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id, bos_token_id=None))
    args = ORPOConfig(
        output_dir=output_dir, learning_rate=1e-3, beta=0.1, max_steps=steps, per_device_train_batch_size=4,
        per_device_eval_batch_size=8, logging_steps=1, eval_strategy="steps", eval_steps=steps // 2,
        save_strategy="steps", save_steps=steps, report_to=[], seed=seed, max_length=96, use_cpu=True,
        disable_tqdm=True, dataloader_num_workers=0,
    )
    ORPOTrainer(model=model, args=args, train_dataset=Dataset.from_list(pairs[16:]), eval_dataset=Dataset.from_list(pairs[:16]),
                processing_class=tokenizer).train()


def zip_folder(folder: Path, archive: Path) -> Path:
    """`zip -r archive folder/` run from the folder's parent: every member under the folder's own name."""
    import zipfile

    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zipped:
        for file in sorted(folder.rglob("*")):
            zipped.write(file, file.relative_to(folder.parent).as_posix())
    return archive


def tar_gz_folder(folder: Path, archive: Path) -> Path:
    """`tar czf archive folder/` run from the folder's parent."""
    import tarfile

    with tarfile.open(archive, "w:gz") as tarred:
        tarred.add(folder, arcname=folder.name)
    return archive
