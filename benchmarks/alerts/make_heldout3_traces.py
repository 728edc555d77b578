"""The third held-out collection (benchmarks/alerts/heldout3/): positives for the two kinds that the
first two held-out sets never had a labelled positive of, `over_penalization` and `non_finite`, next
to healthy runs of the same setting (issue 16, "held-out discipline").

Everything here is our trainer (`trainer.worker.main`, in-process, as make_real_traces.py) on what
neither the tuning runs nor heldout/ nor heldout2/ had:

- new seeds (+80 000);
- new data: another word mapping (PERM_SEED 53), another eval set (EVAL_SEED 59, 96 pairs), 8 % word
  noise (tuning 15 %, heldout 10 %, heldout2 12 %) and answers of 5 words instead of 6;
- a different model size built locally: from_config Llama, 3 layers, hidden 56, 2 KV heads
  (tuning 2 x 32-64; heldout 3 x 80; heldout2 4 x 40).

Scenarios:

- `ours_healthy_*`: fresh model, moderate lr and beta (what must not alert).
- `ours_sft_healthy_0`: the model SFT'd on the chosen answers first, then ORPO at beta 0.2 on
  near-miss pairs (the over-penalisation setting at a sane beta: what must not alert there).
- `ours_sft_beta*`: the same setting, then ORPO with a penalty weight far too high (beta 5-100, the
  product brief's lambda; 200-300 ORPO steps, lr 2e-3 and two at 3e-3-5e-3): the odds-ratio term
  dominates, and pushing the rejected answer (one word away from the chosen one) down can drag the
  chosen log-prob down with it. Beta 5-20 did not do that on this model (the label stayed off), so
  higher betas were added, one at a time; every run made is kept in the set, positive or not.
- `ours_fp16_*`: float16 autocast with loss scaling, lr 5e-2-2e-1 on a memorisable set of 24 pairs:
  gradients overflow (grad_norm NaN on the steps the scaler skips) and, at lr 1e-1 and 2e-1, the
  weights end up NaN (every metric NaN from then on). Real NaN on CPU, so no injected NaN was needed.

Labels are NOT written here: label_heldout3.py writes them from each run's own metrics by
label_traces.py's hindsight rules (unchanged; T_LEARN from the tuning collection), with the
numbers behind each label, and they are committed before any detector runs on these traces.

    OMP_NUM_THREADS=1 python benchmarks/alerts/make_heldout3_traces.py [--only PREFIX]   # one thread
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

HELDOUT3 = Path(__file__).parent / "heldout3"
SEED_OFFSET = 80_000
PERM_SEED = 53  # tuning: random.Random(0)'s permutation; heldout: 7; heldout2: 29
EVAL_SEED = 59  # tuning: 1; heldout: 11; heldout2: 31
WORD_NOISE = 0.08  # tuning: 0.15; heldout: 0.10; heldout2: 0.12
WORDS_PER_ANSWER = 5  # every earlier set: 6
HIDDEN, LAYERS = 56, 3


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
    hidden: int = HIDDEN
    layers: int = LAYERS
    near_miss: int = 0
    sft_steps: int = 0
    train_pairs: int = 0
    dtype: str = "float32"
    notes: str = ""


def runs() -> list[Run]:
    s = SEED_OFFSET
    sft = dict(near_miss=1, sft_steps=200, schedule="constant")
    return [
        Run("ours_healthy_0", s + 1, lr=2e-3, beta=0.2, notes="fresh model, lr 2e-3, beta 0.2"),
        Run("ours_healthy_1", s + 2, lr=1.5e-3, beta=0.1, schedule="cosine", notes="fresh model, cosine"),
        Run("ours_healthy_2", s + 3, lr=3e-3, beta=0.5, schedule="constant", notes="fresh model, beta 0.5"),
        Run("ours_sft_healthy_0", s + 10, beta=0.2, **sft, notes="SFT first, then ORPO at beta 0.2"),
        Run("ours_sft_beta5_0", s + 20, beta=5.0, **sft, notes="SFT first, then ORPO with beta 5"),
        Run("ours_sft_beta10_0", s + 21, beta=10.0, **sft, notes="SFT first, then ORPO with beta 10"),
        Run("ours_sft_beta20_0", s + 22, beta=20.0, **sft, notes="SFT first, then ORPO with beta 20"),
        # beta 5-20 (the three runs above) left the chosen log-prob within 0.06 nats of its peak on this
        # model; the tuning runs needed 60-100. Higher penalties (the config caps beta at 100), every run
        # kept whatever its labels turn out to be:
        Run("ours_sft_beta50_0", s + 23, beta=50.0, **sft, notes="SFT first, then ORPO with beta 50"),
        Run("ours_sft_beta100_0", s + 24, beta=100.0, **sft, notes="SFT first, then ORPO with beta 100"),
        Run("ours_sft_beta100_1", s + 25, beta=100.0, **sft, notes="SFT first, then ORPO with beta 100 (the config's cap)"),
        Run("ours_sft_beta100_2", s + 27, beta=100.0, **sft, notes="SFT first, then ORPO with beta 100 (the config's cap)"),
        Run("ours_sft_beta75_0", s + 28, beta=75.0, **sft, notes="SFT first, then ORPO with beta 75"),
        Run("ours_sft_beta20_lr5e-3_0", s + 26, beta=20.0, lr=5e-3, **sft,
            notes="SFT first, then ORPO with beta 20 at lr 5e-3"),
        # Of the nine above, two fall > 0.2 nats below their peak (the label's bar); the others lose
        # 0.03-0.14. A higher lr or a longer run at a strong penalty:
        Run("ours_sft_beta100_lr3e-3_0", s + 40, beta=100.0, lr=3e-3, **sft,
            notes="SFT first, then ORPO with beta 100 at lr 3e-3"),
        Run("ours_sft_beta50_lr4e-3_0", s + 41, beta=50.0, lr=4e-3, **sft,
            notes="SFT first, then ORPO with beta 50 at lr 4e-3"),
        Run("ours_sft_beta100_long_0", s + 42, beta=100.0, steps=300, **sft,
            notes="SFT first, then 300 ORPO steps with beta 100"),
        Run("ours_sft_beta100_long_1", s + 43, beta=100.0, steps=300, **sft,
            notes="SFT first, then 300 ORPO steps with beta 100"),
        Run("ours_sft_beta75_long_0", s + 44, beta=75.0, steps=300, **sft,
            notes="SFT first, then 300 ORPO steps with beta 75"),
        Run("ours_fp16_lr5e-2_0", s + 30, lr=5e-2, train_pairs=24, dtype="float16", schedule="constant", steps=120,
            notes="float16 autocast + loss scaling, lr 5e-2 on 24 pairs"),
        Run("ours_fp16_lr1e-1_0", s + 31, lr=1e-1, train_pairs=24, dtype="float16", schedule="constant", steps=120,
            notes="float16 autocast + loss scaling, lr 1e-1 on 24 pairs"),
        Run("ours_fp16_lr2e-1_0", s + 32, lr=2e-1, train_pairs=24, dtype="float16", schedule="constant", steps=120,
            notes="float16 autocast + loss scaling, lr 2e-1 on 24 pairs"),
        Run("ours_fp16_lr7e-2_0", s + 33, lr=7e-2, train_pairs=24, dtype="float16", schedule="constant", steps=120,
            notes="float16 autocast + loss scaling, lr 7e-2 on 24 pairs"),
    ]


def make_data(r: Run, d: Path) -> None:
    rng = random.Random(r.seed)
    perm = list(range(mrt.GOOD))
    random.Random(PERM_SEED).shuffle(perm)
    old = mrt.WORD_NOISE, mrt.K
    mrt.WORD_NOISE, mrt.K = WORD_NOISE, WORDS_PER_ANSWER
    try:
        mrt.write_jsonl(d / "train.jsonl", mrt.make_pairs(rng, r.train_pairs or 4000, perm, near_miss=r.near_miss))
        mrt.write_jsonl(d / "eval.jsonl", mrt.make_pairs(random.Random(EVAL_SEED), 96, perm, near_miss=r.near_miss))
    finally:
        mrt.WORD_NOISE, mrt.K = old


def sft_first(r: Run, d: Path) -> Path:
    """Train the fresh model on the chosen answers alone (beta ~ 0): a model that already writes them,
    like a pretrained model on data in its own format. Returns the checkpoint folder."""
    import yaml

    from trainer.worker import main as trainer_main

    config = {
        "model": str(d / "model"), "dataset": str(d / "train.jsonl"), "device": "cpu", "max_length": 48,
        "max_prompt_length": 24, "beta": 1e-4, "learning_rate": 3e-3, "batch_size": 8, "max_steps": r.sft_steps,
        "seed": r.seed, "lr_scheduler": "constant", "warmup_steps": 20, "eval_fraction": 0.0,
        "output_dir": str(d / "sft"),
    }
    (d / "sft.yaml").write_text(yaml.safe_dump(config))
    if trainer_main([str(d / "sft.yaml"), "--quiet"]) != 0:
        raise SystemExit(f"{r.name}: the SFT phase failed")
    return d / "sft" / f"checkpoint-{r.sft_steps}"


def run(r: Run, tokenizer, work: Path) -> list[dict]:
    d = work / r.name
    d.mkdir()
    save_model(d / "model", tokenizer, r.hidden, r.layers, r.seed, ffn_ratio=2, kv_heads=2)  # heldout3's shape
    make_data(r, d)
    model = sft_first(r, d) if r.sft_steps else d / "model"
    config = {
        "model": str(model), "dataset": str(d / "train.jsonl"), "eval_dataset": str(d / "eval.jsonl"),
        "device": "cpu", "dtype": r.dtype, "max_length": 48, "max_prompt_length": 24, "beta": r.beta,
        "learning_rate": r.lr, "batch_size": r.batch, "max_steps": r.steps, "seed": r.seed,
        "lr_scheduler": r.schedule, "warmup_steps": r.warmup, "eval_every": 10, "logging_every": 1,
        "output_dir": str(d / "out"),
    }
    return mrt.train_for_trace(r.name, d, config)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="")
    args = ap.parse_args()
    HELDOUT3.mkdir(parents=True, exist_ok=True)
    import torch
    from transformers.utils import logging as hf_logging

    torch.set_num_threads(1)
    hf_logging.set_verbosity_error()
    tokenizer = mrt.build_tokenizer()
    mrt.write_runs(runs(), run, tokenizer, HELDOUT3, HELDOUT3 / "ours_runs.json", args.only)


if __name__ == "__main__":
    main()
