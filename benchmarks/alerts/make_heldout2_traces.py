"""The second held-out collection (benchmarks/alerts/heldout2/): runs never used to tune, made after
the first held-out set had shown where the detectors miss, so that a fix for that miss is measured
on runs it was not fitted to.

Two parts, both labelled by label_traces.py's hindsight rules (unchanged; T_LEARN from the tuning
collection) by label_added.py, and the labels committed before any detector runs on them:

- `ours_*`: our trainer (`trainer.worker.main`, as make_real_traces.py) on what neither the tuning
  runs nor the first held-out set had: new seeds (+60 000), new data (another word mapping, another
  eval set, 12 % word noise), a different model size built locally (from_config Llama, 4 layers,
  hidden 40). Every run has 150 steps or more, so the rules' 41-point smoothing and "last 50 steps"
  can judge it (no hand labels).
- `trl_*`: TRL ORPOTrainer runs on a regenerated variant of the demo preference set and a 3-layer,
  hidden-96 model (trl_runs.py --set heldout2, in its own environment).

    python benchmarks/alerts/make_heldout2_traces.py [--only PREFIX]   # ~1-3 min a run on one thread
"""

from __future__ import annotations

import argparse
import random
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import make_real_traces as mrt  # noqa: E402
from make_heldout_traces import save_model  # noqa: E402

HELDOUT2 = Path(__file__).parent / "heldout2"
SEED_OFFSET = 60_000
PERM_SEED = 29  # tuning: random.Random(0)'s permutation; first held-out set: 7
EVAL_SEED = 31  # tuning: 1; first held-out set: 11
WORD_NOISE = 0.12  # tuning: 0.15; first held-out set: 0.10


@dataclass
class Run:
    name: str
    seed: int
    lr: float = 2e-3
    beta: float = 0.2
    batch: int = 8
    steps: int = 200
    warmup: int = 20
    schedule: str = "linear"
    hidden: int = 40
    layers: int = 4
    swap_frac: float = 0.0
    noisy_chosen: float = 0.0


def runs() -> list[Run]:
    s = SEED_OFFSET
    return [
        Run("ours_healthy_0", s + 1, lr=2e-3, beta=0.2),
        Run("ours_healthy_1", s + 2, lr=1.5e-3, beta=0.1, schedule="cosine", batch=16),
        Run("ours_slow_0", s + 3, lr=2e-4),
        Run("ours_slow_1", s + 4, lr=4e-4, steps=250, schedule="cosine"),
        Run("ours_lr_too_low_0", s + 10, lr=1e-6),
        Run("ours_lr_too_high_0", s + 20, lr=5e-2, schedule="constant"),
        Run("ours_beta_too_high_0", s + 30, beta=30.0),
        Run("ours_swapped_labels_0", s + 40, swap_frac=1.0),
        Run("ours_noisy_chosen_0", s + 50, noisy_chosen=0.9),
    ]


def run(r: Run, tokenizer, work: Path) -> list[dict]:
    rng = random.Random(r.seed)
    perm = list(range(mrt.GOOD))
    random.Random(PERM_SEED).shuffle(perm)
    d = work / r.name
    d.mkdir()
    save_model(d / "model", tokenizer, r.hidden, r.layers, r.seed)
    old_noise, mrt.WORD_NOISE = mrt.WORD_NOISE, WORD_NOISE
    try:
        mrt.write_jsonl(d / "train.jsonl", mrt.make_pairs(rng, 4000, perm, swap=r.swap_frac, noisy=r.noisy_chosen))
        mrt.write_jsonl(d / "eval.jsonl", mrt.make_pairs(random.Random(EVAL_SEED), 96, perm))
    finally:
        mrt.WORD_NOISE = old_noise
    config = {
        "model": str(d / "model"), "dataset": str(d / "train.jsonl"), "eval_dataset": str(d / "eval.jsonl"),
        "device": "cpu", "dtype": "float32", "max_length": 48, "max_prompt_length": 24, "beta": r.beta,
        "learning_rate": r.lr, "batch_size": r.batch, "max_steps": r.steps, "seed": r.seed,
        "lr_scheduler": r.schedule, "warmup_steps": r.warmup, "eval_every": 10, "logging_every": 1,
        "output_dir": str(d / "out"),
    }
    return mrt.train_for_trace(r.name, d, config)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="")
    args = ap.parse_args()
    import torch
    from transformers.utils import logging as hf_logging

    torch.set_num_threads(1)
    hf_logging.set_verbosity_error()
    HELDOUT2.mkdir(parents=True, exist_ok=True)
    tokenizer = mrt.build_tokenizer()
    meta_path = HELDOUT2 / "ours_runs.json"
    mrt.write_runs(runs(), run, tokenizer, HELDOUT2, meta_path, args.only)


if __name__ == "__main__":
    main()
