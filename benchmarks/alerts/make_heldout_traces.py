"""The held-out trace collection: runs the detectors and their thresholds were never tuned on.

Written to benchmarks/alerts/heldout/ (the tuning collection is benchmarks/alerts/traces/). Three parts:

- `ours_*`: our trainer (`trainer.worker.main`, as make_real_traces.py) on what the tuning runs never
  had: new seeds (+50 000), new data (another word mapping, another eval set, 10 % word noise instead of
  15 %), a different model size built locally (from_config Llama, 3 layers, hidden 80 instead of 2 x 32-64),
  and short runs (60-100 steps) next to 200-step ones. (Twelve were planned; noisy-chosen, fp16 and a
  100-step healthy run were left out for CPU time: ~2-5 min a run on the shared machine.)
- `hsyn_*`: seeded synthetic traces of the failure classes issue 16 reported, which the tuning
  collection does not have: an lr blow-up at steps 12-20 that recovers, a train loss swinging
  wildly while the eval loss rises, lr 5e-3 on the bundled model (loss 1.7 -> ~20 within 10 steps,
  ~5 at step 60), lr 1e-9 on a 60-step run (nothing moves), and healthy short runs with a one-batch
  spike or a noisy eval (what must not alert). The label is the injected onset, by construction.
- `trl_*`: TRL ORPOTrainer runs, made by trl_runs.py in its own environment (their
  trainer_state.json is read through diagnose's own import path, load_metrics_file).

Labels: the `ours_*` runs of 200 steps are labelled by label_traces.py's hindsight rules (unchanged;
T_LEARN from the tuning collection, as fresh_seeds.py does); short runs, where those rules' 41-point
smoothing and "last 50 steps" cannot judge, are labelled by hand, with the reason written beside the
label. label_heldout.py writes heldout/labels.json; it is committed before any detector change.

    python benchmarks/alerts/make_heldout_traces.py [--only PREFIX] [--synthetic-only]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from make_real_traces import GOOD, build_tokenizer, make_pairs, train_for_trace, write_jsonl, write_runs  # noqa: E402
from traces import write_trace  # noqa: E402

HELDOUT = Path(__file__).parent / "heldout"
SEED_OFFSET = 50_000
PERM_SEED = 7  # the tuning runs map words through random.Random(0)'s permutation
EVAL_SEED = 11  # ...and evaluate on random.Random(1)'s pairs


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
    hidden: int = 80
    layers: int = 3
    swap_frac: float = 0.0
    noisy_chosen: float = 0.0
    train_pairs: int = 0
    dtype: str = "float32"
    eval_every: int = 10


def runs() -> list[Run]:
    s = SEED_OFFSET
    return [
        Run("ours_healthy_0", s + 1, lr=2e-3, beta=0.2),
        Run("ours_healthy_1", s + 2, lr=1e-3, beta=0.1, schedule="cosine", batch=16),
        Run("ours_lr_too_low_0", s + 10, lr=1e-6),
        Run("ours_lr_too_high_0", s + 20, lr=5e-2, schedule="constant"),
        Run("ours_swapped_labels_0", s + 40, swap_frac=1.0),
        # Short runs: the length a new user tries first.
        Run("ours_short_healthy_0", s + 80, steps=60, lr=3e-3, warmup=5, eval_every=5),
        Run("ours_short_lr_too_low_0", s + 90, steps=60, lr=1e-7, warmup=5),
        Run("ours_short_lr_too_high_0", s + 95, steps=60, lr=1e-1, warmup=0, schedule="constant"),
        Run("ours_short_blowup_0", s + 96, steps=100, lr=6e-2, warmup=10),
    ]


def save_model(path: Path, tokenizer, hidden: int, layers: int, seed: int, *, ffn_ratio: int = 3,
               kv_heads: int = 4) -> None:
    """A fresh tiny Llama (4 attention heads; `kv_heads` of them for keys and values) saved with the tokenizer.
    The defaults are this set's model; later sets change the shape through the keywords."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=ffn_ratio * hidden, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=kv_heads, max_position_embeddings=64,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, bos_token_id=None,
    )
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)


def run(r: Run, tokenizer, work: Path) -> list[dict]:
    import make_real_traces as mrt

    rng = random.Random(r.seed)
    perm = list(range(GOOD))
    random.Random(PERM_SEED).shuffle(perm)
    d = work / r.name
    d.mkdir()
    save_model(d / "model", tokenizer, r.hidden, r.layers, r.seed)
    old_noise, mrt.WORD_NOISE = mrt.WORD_NOISE, 0.10
    try:
        write_jsonl(d / "train.jsonl", make_pairs(rng, r.train_pairs or 4000, perm, swap=r.swap_frac,
                                                  noisy=r.noisy_chosen))
        write_jsonl(d / "eval.jsonl", make_pairs(random.Random(EVAL_SEED), 64, perm))
    finally:
        mrt.WORD_NOISE = old_noise
    config = {
        "model": str(d / "model"), "dataset": str(d / "train.jsonl"), "eval_dataset": str(d / "eval.jsonl"),
        "device": "cpu", "dtype": r.dtype, "max_length": 48, "max_prompt_length": 24, "beta": r.beta,
        "learning_rate": r.lr, "batch_size": r.batch, "max_steps": r.steps, "seed": r.seed,
        "lr_scheduler": r.schedule, "warmup_steps": r.warmup, "eval_every": r.eval_every, "logging_every": 1,
        "output_dir": str(d / "out"),
    }
    return train_for_trace(r.name, d, config)


# ----- synthetic failure classes (issue 16) -----

def _rows(steps, loss, nll, lor, grad, rng, *, eval_every=10, eval_loss=None, eval_nll=None, lr=1e-4):
    rows = []
    for i, t in enumerate(steps):
        or_loss = float(np.log1p(np.exp(-lor[i])))
        r = {"step": int(t), "loss": float(loss[i]), "nll_loss": float(nll[i]), "or_loss": or_loss,
             "log_odds_ratio": float(lor[i]), "logps_chosen": float(-nll[i]),
             "logps_rejected": float(-nll[i] - 0.4 * max(float(lor[i]), 0.0)), "grad_norm": float(grad[i]),
             "learning_rate": lr}
        rows.append(r)
        if eval_every and int(t) % eval_every == 0:
            e: dict[str, object] = {"step": int(t)}
            if eval_loss is not None:
                e["eval/loss"] = float(eval_loss[i] + rng.normal(0, 0.01))
            if eval_nll is not None:
                e["eval/nll_loss"] = float(eval_nll[i] + rng.normal(0, 0.01))
            if len(e) > 1:
                rows.append(e)
    return rows


def synthetic() -> dict[str, tuple[list[dict], list[dict]]]:
    out: dict[str, tuple[list[dict], list[dict]]] = {}
    beta = 0.1
    for i in range(4):  # an lr far too high: blow-up at steps 12-20, then recovery (TRL-like)
        rng = np.random.default_rng(70_000 + i)
        n, t0 = 200, int(rng.integers(12, 21))
        t = np.arange(1, n + 1, dtype=float)
        nll = 0.9 + 0.4 * np.exp(-t / 30) + rng.normal(0, 0.05, n)
        bump = np.where(t >= t0, (8.5 + i) * np.exp(-np.clip(t - t0 - 3, 0, None) / 25)
                        * np.clip((t - t0 + 1) / 3, 0, 1), 0.0)
        nll = nll + bump
        lor = np.clip(0.5 * (1 - np.exp(-t / 20)), 0, None) - 0.05 * bump + rng.normal(0, 0.15, n)
        loss = nll + beta * np.log1p(np.exp(-lor))
        grad = np.abs(1.5 + rng.normal(0, 0.3, n))
        grad[(t >= t0) & (t < t0 + 4)] *= 100 + 40 * i
        ev_nll = 1.25 + bump * 0.75
        rows = _rows(t, loss, nll, lor, grad, rng, eval_loss=ev_nll + 0.07, eval_nll=ev_nll, lr=2e-3)
        ev0 = (t0 - 1) // 10 * 10 or 10
        out[f"hsyn_early_blowup_{i}"] = (rows, [
            {"kind": "loss_rising", "onset_step": t0,
             "reason": "injected: loss multiplies ~9x within 3 steps of onset with a 100x grad-norm spike"},
            {"kind": "catastrophic_forgetting", "onset_step": ev0,
             "reason": "injected: eval NLL 1.25 -> ~7.5 after the blow-up; onset = the last eval before it"}])
    for i in range(3):  # train loss swings 0.1-55 with no trend while the eval loss rises 17 -> 32
        rng = np.random.default_rng(71_000 + i)
        n, t0 = 300, int(rng.integers(80, 140))
        t = np.arange(1, n + 1, dtype=float)
        loss = np.exp(rng.normal(1.5, 1.3, n)).clip(0.1, 55)
        nll = loss * 0.95
        lor = rng.normal(0.2, 1.5, n)
        grad = np.exp(rng.normal(3, 1, n))
        ev = 17 + 15 * np.clip((t - t0) / (n - t0), 0, 1) + rng.normal(0, 0.3, n)
        with_nll = i < 2
        rows = _rows(t, loss, nll, lor, grad, rng, eval_loss=ev, eval_nll=(ev * 0.95 if with_nll else None))
        labs = [{"kind": "loss_rising", "onset_step": t0,
                 "reason": "injected: eval total loss rises 17 -> 32 from onset; the train loss has no trend"}]
        if with_nll:
            labs.append({"kind": "catastrophic_forgetting", "onset_step": t0 // 10 * 10,
                         "reason": "injected: eval NLL rises with the eval loss from onset"})
        out[f"hsyn_eval_diverges_{i}"] = (rows, labs)
    for i in range(3):  # lr 5e-3 on the bundled model: 1.7 -> ~20 within 10 steps, ~5 at step 60
        rng = np.random.default_rng(72_000 + i)
        n, t0 = 60, int(rng.integers(2, 5))
        t = np.arange(1, n + 1, dtype=float)
        rise = np.clip((t - t0) / 6, 0, 1)
        peak = 18 + 3 * i
        nll = 1.7 + rise * (peak - 1.7) * np.exp(-np.clip(t - t0 - 6, 0, None) / (25 + 5 * i))
        nll = nll + rng.normal(0, 0.3, n) * (1 + rise)
        lor = 0.05 - 1.5 * rise + rng.normal(0, 0.3, n)
        loss = nll + beta * np.log1p(np.exp(-lor))
        grad = np.abs(3 + rng.normal(0, 0.5, n))
        grad[(t >= t0) & (t < t0 + 6)] *= 60
        ev = nll + 0.2
        rows = _rows(t, loss, nll, lor, grad, rng, eval_every=20, eval_loss=ev, eval_nll=ev, lr=5e-3)
        out[f"hsyn_lr5e3_bundled_{i}"] = (rows, [
            {"kind": "loss_rising", "onset_step": t0,
             "reason": "injected: loss 1.7 -> ~20 within 6 steps of onset (lr 250x the default), still ~5 at step 60"}])
    for i in range(3):  # lr 1e-9, 60 steps: nothing moves
        rng = np.random.default_rng(73_000 + i)
        n = 60
        t = np.arange(1, n + 1, dtype=float)
        nll = 1.7 + 0.1 * i + rng.normal(0, 0.08, n)
        lor = 0.02 + rng.normal(0, 0.15, n)
        loss = nll + beta * np.log1p(np.exp(-lor))
        grad = np.abs(4 + rng.normal(0, 0.5, n))
        rows = _rows(t, loss, nll, lor, grad, rng, eval_every=20, eval_loss=nll + 0.05, eval_nll=nll, lr=1e-9)
        out[f"hsyn_lr1e9_short_{i}"] = (rows, [
            {"kind": "log_odds_flat", "onset_step": 1,
             "reason": "injected: log odds ratio stays ~0 from the first step (nothing is learned)"},
            {"kind": "format_not_learned", "onset_step": 1,
             "reason": "injected: chosen NLL flat at its start (1.7-1.9 nats/token) from the first step"}])
    for i in range(6):  # healthy short runs: a one-batch spike, a noisy eval, warmup wobble
        rng = np.random.default_rng(74_000 + i)
        n = [60, 60, 100, 100, 150, 60][i]
        t = np.arange(1, n + 1, dtype=float)
        nll = 1.2 + 1.5 * np.exp(-t / (15 + 3 * i)) + rng.normal(0, 0.1, n)
        lor = 2.0 * (1 - np.exp(-t / 12)) + rng.normal(0, 0.3, n)
        grad = np.abs(2 + rng.normal(0, 0.4, n))
        spike = int(rng.integers(8, 20))
        if i in (0, 2, 4):  # one bad batch: loss x3 and grad x10 on a single step
            nll[spike - 1] *= 3
            grad[spike - 1] *= 10
        if i == 5:  # warmup wobble: the loss rises 20 % over the first 6 steps, then learns
            nll[:6] *= 1 + np.linspace(0, 0.2, 6)
        loss = nll + beta * np.log1p(np.exp(-lor))
        ev = 1.3 + 1.4 * np.exp(-t / (15 + 3 * i))
        if i in (1, 3):  # one noisy eval
            ev = ev.copy()
            ev[min(n - 1, 39)] *= 1.3
        rows = _rows(t, loss, nll, lor, grad, rng, eval_every=10, eval_loss=ev + 0.1, eval_nll=ev)
        out[f"hsyn_short_healthy_{i}"] = (rows, [])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="")
    ap.add_argument("--synthetic-only", action="store_true")
    args = ap.parse_args()
    HELDOUT.mkdir(parents=True, exist_ok=True)
    syn_path = HELDOUT / "synthetic_labels.json"
    syn = {}
    for name, (rows, lab) in synthetic().items():
        write_trace(HELDOUT / f"{name}.jsonl.gz", rows)
        syn[name] = lab
    syn_path.write_text(json.dumps(syn, indent=1, sort_keys=True) + "\n")
    if args.synthetic_only:
        return
    import torch
    from transformers.utils import logging as hf_logging

    torch.set_num_threads(1)
    hf_logging.set_verbosity_error()
    tokenizer = build_tokenizer()
    meta_path = HELDOUT / "ours_runs.json"
    write_runs(runs(), run, tokenizer, HELDOUT, meta_path, args.only)



if __name__ == "__main__":
    main()
