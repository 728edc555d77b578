"""Realistic dashboard contents for screenshots: ORPO-shaped curves streamed through the real worker
protocol (StreamingReporter), with eval points, samples, logs, checkpoints on disk, alerts raised by
the server's own detectors, and a failed run with its traceback."""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.pages.conftest import register_run
from trainer.streaming import StreamingReporter

PROMPTS = [
    "Explain in one sentence why the sky is blue.",
    "Write a polite reply declining a meeting invitation.",
]
COMPLETIONS = {
    100: ["The sky is blue because air scatters blue light.", "Thank you for the invite, but I can't attend."],
    200: ["Sunlight scatters off air molecules, and shorter blue wavelengths scatter the most, so the sky looks blue.",
          "Thank you for thinking of me. Unfortunately I have a conflict at that time, but please share the notes."],
    300: ["Air molecules scatter short (blue) wavelengths of sunlight far more than long ones (Rayleigh scattering), "
          "so blue light reaches our eyes from every direction of the sky.",
          "Thank you for the invitation. I'm unable to join this time because of a prior commitment; "
          "I'd be glad to catch up afterwards."],
}
TRACEBACK = """Traceback (most recent call last):
  File "trainer/recipe.py", line 212, in train
    self._check_finite(metrics, step)
  File "trainer/recipe.py", line 301, in _check_finite
    raise FloatingPointError(f"loss is {value} at step {step}")
FloatingPointError: loss is nan at step 85 (float16 overflow in the odds-ratio term; try dtype=bfloat16)"""


@dataclass
class Shape:
    """How one run's curves behave."""

    beta: float = 0.1
    lr: float = 8e-6
    scheduler: str = "cosine"
    seed: int = 0
    rise_from: int | None = None  # loss and chosen log-probs turn bad from this step (over-penalisation)
    nan_from: int | None = None  # float16 overflow: loss is NaN from this step


def _lr(step: int, total: int, peak: float, scheduler: str) -> float:
    warmup = max(1, total // 10)
    if step < warmup:
        return peak * step / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.5 * (1 + math.cos(math.pi * progress)) if scheduler == "cosine" else 1 - progress)


def metrics_at(step: int, total: int, shape: Shape) -> dict[str, float]:
    noise = random.Random(shape.seed * 100_000 + step)
    n = lambda scale: noise.gauss(0, scale)  # noqa: E731
    progress = 1 - math.exp(-step / 90)
    chosen = -1.55 + 0.35 * progress + n(0.03)
    rejected = -1.65 - 0.55 * progress * (1 + shape.beta) + n(0.03)
    if shape.rise_from is not None and step > shape.rise_from:
        chosen -= 0.004 * (step - shape.rise_from)
    log_odds = (chosen - rejected) * 3.2 + n(0.08)
    or_loss = math.log1p(math.exp(-log_odds))
    nll = 1.05 + 0.95 * math.exp(-step / 70) + n(0.04)
    if shape.rise_from is not None and step > shape.rise_from:
        nll += 0.003 * (step - shape.rise_from)
    loss = nll + shape.beta * or_loss
    if shape.nan_from is not None and step >= shape.nan_from:
        loss = float("nan")
    accuracy = min(1.0, max(0.0, round((0.5 + 0.3 * progress + n(0.08)) * 8) / 8))
    return {
        "loss": loss, "nll_loss": nll, "or_loss": or_loss, "log_odds_ratio": log_odds, "accuracy": accuracy,
        "margin": chosen - rejected, "logps_chosen": chosen, "logps_rejected": rejected,
        "learning_rate": _lr(step, total, shape.lr, shape.scheduler), "grad_norm": 0.9 + 2.5 * math.exp(-step / 40) + abs(n(0.15)),
        "tokens_per_sec": 2350 + n(60), "step_time": 0.41 + n(0.01), "epoch": 2 * step / total,
    }


def _eval_at(step: int, total: int, shape: Shape) -> dict[str, float]:
    train = metrics_at(step, total, Shape(**{**shape.__dict__, "seed": shape.seed + 7}))
    return {f"eval/{name}": train[name] * factor for name, factor in
            (("loss", 1.06), ("nll_loss", 1.06), ("log_odds_ratio", 0.85), ("accuracy", 0.95))}


def write_checkpoint(output_dir: Path, step: int) -> None:
    folder = output_dir / f"checkpoint-{step}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 576, "num_hidden_layers": 30}))
    (folder / "generation_config.json").write_text(json.dumps({"do_sample": False}))
    (folder / "model.safetensors").write_bytes(b"\0" * 180_000)
    (folder / "tokenizer.json").write_text(json.dumps({"version": "1.0", "model": {"type": "BPE"}}))
    (folder / "trainer_state.pt").write_bytes(b"\0" * 24_000)


def stream_run(server: Any, dataset: Path, name: str, *, total: int, steps: int, shape: Shape, status: str,
               output_dir: Path | None = None, tags: list[str] | None = None, error: str | None = None,
               **config: Any) -> tuple[int, StreamingReporter]:
    """Registers and streams one run; returns (id, reporter). The reporter is still open for a running run."""
    if output_dir is not None:
        config["output_dir"] = str(output_dir)
    run_id, token = register_run(server, dataset, name=name, beta=shape.beta, learning_rate=shape.lr,
                                 lr_scheduler=shape.scheduler, max_steps=total, **config)
    if tags:
        server.api("PATCH", f"/api/runs/{run_id}", json={"tags": tags})
    reporter = StreamingReporter(server.url, run_id, token, spill_path=dataset.parent / f"spill-{run_id}.jsonl")
    reporter.status("running", total_steps=total)
    reporter.log(f"Loaded model {config.get('model', 'bundled:SmolLM2-135M-Instruct')} (134.5M parameters, float32, cpu)")
    reporter.log(f"Dataset: 1,200 preference pairs ({dataset.name}); 60 held out for evaluation")
    for step in range(1, steps + 1):
        reporter.metrics(step, metrics_at(step, total, shape))
        if step % 50 == 0:
            reporter.metrics(step, _eval_at(step, total, shape))
        if step % 25 == 0:
            m = metrics_at(step, total, shape)
            reporter.log(f"step {step}/{total}  loss {m['loss']:.4f}  log_odds_ratio {m['log_odds_ratio']:.3f}  "
                         f"acc {m['accuracy']:.2f}  lr {m['learning_rate']:.2e}  {m['tokens_per_sec']:.0f} tok/s")
        if step in COMPLETIONS and output_dir is not None:
            reporter.samples(step, [{"prompt": p, "completion": c} for p, c in zip(PROMPTS, COMPLETIONS[step], strict=True)])
            write_checkpoint(output_dir, step)
            reporter.log(f"Saved checkpoint-{step} to {output_dir}")
    if status == "failed":
        for line in (error or "").splitlines():
            reporter.output_line("stderr", line)
    if status != "running":
        reporter.status(status, error=error)
        reporter.close(timeout=30)
    return run_id, reporter
