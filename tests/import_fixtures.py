"""Files of runs made elsewhere, written by the real tools: transformers' TrainerState (what the Hugging
Face Trainer saves as trainer_state.json in every checkpoint folder) and TensorBoard's SummaryWriter (torch's).
TRL's ORPOTrainer logs under its own names; tests/over_penalized.py's run (a pitfall the alert engine
catches) is logged here under them."""

from __future__ import annotations

import json
import math
from pathlib import Path

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
