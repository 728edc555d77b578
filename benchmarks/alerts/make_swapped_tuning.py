"""More tuning traces of one kind (benchmarks/alerts/traces/tune_swapped_labels_*): our trainer with every
training pair swapped, the kind behind the one false alarm left on the held-out sets (heldout2's
all-swapped run). They are for the tuning set only: new seeds (+70 000), the tuning collection's task
(word mapping random.Random(0), eval set random.Random(1), 15 % word noise), model sizes and settings
varied around make_heldout2_traces.py's recipe. Labelled by label_added.py (label_traces.py's rules,
unchanged) and the labels committed before any detector runs on them.

    python benchmarks/alerts/make_swapped_tuning.py [--only PREFIX]   # ~1-3 min a run on one thread
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import make_real_traces as mrt  # noqa: E402
from make_heldout2_traces import Run  # noqa: E402
from make_heldout_traces import save_model  # noqa: E402
from traces import TRACES  # noqa: E402

SEED_OFFSET = 70_000


def runs() -> list[Run]:
    s = SEED_OFFSET
    return [
        Run("tune_swapped_labels_0", s + 1, swap_frac=1.0, hidden=40, layers=4),
        Run("tune_swapped_labels_1", s + 2, swap_frac=1.0, hidden=48, layers=3, beta=0.1),
        Run("tune_swapped_labels_2", s + 3, swap_frac=1.0, hidden=32, layers=2, lr=1e-3),
    ]


def run(r: Run, tokenizer, work: Path) -> list[dict]:
    rng = random.Random(r.seed)
    perm = list(range(mrt.GOOD))
    random.Random(0).shuffle(perm)  # the tuning collection's task
    d = work / r.name
    d.mkdir()
    save_model(d / "model", tokenizer, r.hidden, r.layers, r.seed)
    mrt.write_jsonl(d / "train.jsonl", mrt.make_pairs(rng, 4000, perm, swap=r.swap_frac, noisy=r.noisy_chosen))
    mrt.write_jsonl(d / "eval.jsonl", mrt.make_pairs(random.Random(1), 96, perm))
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
    tokenizer = mrt.build_tokenizer()
    meta_path = TRACES / "tune_swapped_runs.json"
    mrt.write_runs(runs(), run, tokenizer, TRACES, meta_path, args.only)


if __name__ == "__main__":
    main()
