"""Real ORPO runs of OUR trainer (`python -m trainer CONFIG --metrics-out FILE --quiet`), pushed into each pitfall.

Each scenario writes a RunConfig YAML and runs the trainer's own CLI entry point
(`trainer.worker.main`, in-process so torch is imported once) on a tiny randomly initialised Llama
(saved to a folder like any local model) and a synthetic word-level preference task, so the traces
are the trainer's real metrics stream: one flat JSON object per step, eval metrics as separate lines
at the same step, NaN/Inf as null.

Task: prompt = 6 random "good" words; chosen = the prompt mapped word by word through a fixed random
permutation of the good words (15 % of words random: aleatoric noise so the NLL plateaus above zero,
like real text), rejected = chosen with 3 words replaced by "bad" words that no clean chosen response
contains (so a healthy run learns the preference within ~100 steps, long before the mapping). Held-out eval: 128 clean pairs, every 10 steps.

Writes benchmarks/alerts/traces/real_<name>.jsonl.gz, keeping only the metrics the detectors and the
labeller read (see traces.py) rounded to 5 significant digits. Labels are NOT written here:
label_traces.py derives them in hindsight from what each run actually did.

    python benchmarks/alerts/make_real_traces.py [--only PREFIX] [--steps N]   # ~8 min on one thread
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from traces import TRACES, write_trace  # noqa: E402

WORDS = [
    "red", "blue", "green", "gold", "pink", "grey", "cat", "dog", "owl", "fox", "bee", "elk",
    "sun", "moon", "star", "rain", "snow", "wind", "oak", "elm", "fig", "pea", "rye", "yam",
]
GOOD, BAD = 16, 8  # WORDS[:16] appear in prompts and chosen responses, WORDS[16:] only in rejected ones
K = 6  # words per prompt / answer
WORD_NOISE = 0.15
EVAL_PAIRS = 128
TRAIN_PAIRS = 4000  # > steps x batch for the "fresh data" runs: no pair repeats


@dataclass
class Scenario:
    name: str
    seed: int = 0
    hidden: int = 48
    lr: float = 2e-3
    beta: float = 0.2
    batch: int = 8
    steps: int = 400
    warmup: int = 20
    schedule: str = "linear"
    swap_frac: float = 0.0  # fraction of training pairs with chosen/rejected swapped
    noisy_chosen: float = 0.0  # fraction of chosen responses replaced by random words
    train_pairs: int = 0  # 0: TRAIN_PAIRS fresh pairs; >0: a tiny set seen for many epochs
    dtype: str = "float32"
    near_miss: int = 0  # >0: rejected = chosen with this many words mapped wrong (no "bad" words to spot)
    sft_steps: int = 0  # >0: start from the model after this many steps of plain SFT on the chosen responses
    notes: str = ""


def scenarios() -> list[Scenario]:
    s: list[Scenario] = []
    grid = [  # healthy: seeds, widths, lrs, betas, batch sizes, schedules
        (48, 2e-3, 0.2, 8, "linear"), (32, 3e-3, 0.1, 8, "cosine"), (64, 1e-3, 0.1, 16, "linear"),
        (48, 1e-3, 0.5, 4, "constant"), (64, 2e-3, 0.3, 8, "cosine"), (32, 2e-3, 0.2, 4, "linear"),
        (48, 3e-3, 0.1, 16, "constant"), (64, 1.5e-3, 0.2, 8, "linear"), (32, 1e-3, 0.2, 16, "cosine"),
        (48, 2e-3, 1.0, 8, "linear"), (64, 3e-3, 0.5, 4, "cosine"), (48, 1.5e-3, 0.1, 8, "constant"),
    ]
    for i, (h, lr, beta, bs, sched) in enumerate(grid):
        s.append(Scenario(f"healthy_{i:02d}", seed=100 + i, hidden=h, lr=lr, beta=beta, batch=bs, schedule=sched))
    # Long healthy runs: 1000 steps, ~100 evaluations on a long plateau, where the best eval NLL so far is
    # a minimum over many noisy values (what catastrophic_forgetting must not mistake for a rise).
    for i, sched in enumerate(["linear", "cosine", "constant"]):
        s.append(Scenario(f"long_healthy_{i}", seed=150 + i, lr=[2e-3, 1.5e-3, 1e-3][i], steps=1000, schedule=sched))
    for i, lr in enumerate([1e-6, 3e-6, 1e-5]):
        s.append(Scenario(f"lr_too_low_{i}", seed=200 + i, lr=lr, notes="lr far too low"))
    for i, lr in enumerate([3e-2, 6e-2, 1e-1]):
        s.append(Scenario(f"lr_too_high_{i}", seed=300 + i, lr=lr, schedule="constant", notes="lr far too high"))
    for i, beta in enumerate([10.0, 30.0, 100.0]):
        s.append(Scenario(f"beta_too_high_{i}", seed=400 + i, beta=beta, notes="beta far too high"))
    for i, frac in enumerate([0.5, 0.7, 1.0]):
        s.append(Scenario(f"swapped_labels_{i}", seed=500 + i, swap_frac=frac, notes=f"{frac:.0%} of pairs swapped"))
    for i, frac in enumerate([1.0, 0.9, 0.8]):
        s.append(Scenario(f"noisy_chosen_{i}", seed=600 + i, noisy_chosen=frac, notes=f"{frac:.0%} chosen are noise"))
    for i, n in enumerate([16, 24, 32]):
        s.append(Scenario(f"tiny_set_epochs_{i}", seed=700 + i, train_pairs=n, lr=3e-3, notes=f"{n} pairs, many epochs"))
    # Fine-tuning a model that already writes the answers (SFT first), on near-miss pairs: the case of
    # a pretrained model where a strong odds-ratio penalty drags the chosen responses down with the rejected.
    for i, beta in enumerate([0.1, 0.2, 0.5]):
        s.append(Scenario(f"sft_healthy_{i}", seed=900 + i, beta=beta, near_miss=1, sft_steps=300, steps=300,
                          schedule="constant", notes="SFT first, then ORPO at a moderate beta"))
    for i, beta in enumerate([30.0, 60.0, 100.0]):
        s.append(Scenario(f"sft_beta_too_high_{i}", seed=910 + i, beta=beta, near_miss=1, sft_steps=300, steps=300,
                          schedule="constant", notes="SFT first, then ORPO with beta far too high"))
    # More seeds of the slow learner's setting (sft_healthy_0, beta 0.1: its log odds ratio starts near 0.2
    # and creeps up for ~100 steps, which log_odds_flat must not call flat)...
    for i, lr in enumerate([1e-3, 2e-3, 1e-3]):
        s.append(Scenario(f"sft_beta01_{i}", seed=920 + i, beta=0.1, lr=lr, near_miss=1, sft_steps=300, steps=300,
                          schedule="constant", notes="SFT first, then ORPO at beta 0.1 (the slow learner's setting)"))
    # ...and after a shorter SFT (the near-miss words less well known: a lower start, a slower climb)...
    for i, (sft, lr) in enumerate([(100, 1e-3), (100, 2e-3), (150, 1e-3), (150, 2e-3)]):
        s.append(Scenario(f"sft_short_{i}", seed=940 + i, beta=0.1, lr=lr, near_miss=1, sft_steps=sft, steps=300,
                          schedule="constant", notes=f"{sft} SFT steps first, then ORPO at beta 0.1"))
    # ...and the same start at a learning rate far too low, which never gets there (what it must call flat).
    for i, lr in enumerate([1e-6, 1e-5, 3e-5]):
        s.append(Scenario(f"sft_lr_too_low_{i}", seed=930 + i, beta=0.1, lr=lr, near_miss=1, sft_steps=300, steps=300,
                          schedule="constant", notes="SFT first, then ORPO with lr far too low"))
    # An SFT'd model in the slow learner's setting whose preferences cannot be learned: labels swapped or
    # chosen replaced by noise (log_odds_flat must not excuse these as slow learners because the NLL falls).
    for i, frac in enumerate([0.5, 0.7, 1.0]):
        s.append(Scenario(f"sft_swapped_labels_{i}", seed=960 + i, beta=0.1, lr=1e-3, near_miss=1, sft_steps=300,
                          steps=300, schedule="constant", swap_frac=frac,
                          notes=f"SFT first, then ORPO at beta 0.1 with {frac:.0%} of pairs swapped"))
    for i, frac in enumerate([1.0, 0.9, 0.8]):
        s.append(Scenario(f"sft_noisy_chosen_{i}", seed=970 + i, beta=0.1, lr=1e-3, near_miss=1, sft_steps=300,
                          steps=300, schedule="constant", noisy_chosen=frac,
                          notes=f"SFT first, then ORPO at beta 0.1 with {frac:.0%} of chosen replaced by noise"))
    # Slow but insufficient descent of the chosen NLL (issue 16's held-out misses were of this kind, in
    # TRL runs): learning rates 4-20x below the healthy grid and tiny widths, on runs of 150-300 steps,
    # next to near misses that do get there. Whether each is labelled format_not_learned is for
    # label_traces.py's rule to say, not this list.
    slow = [  # (hidden, lr, steps, schedule)
        (48, 1e-4, 200, "linear"), (48, 2e-4, 200, "linear"), (48, 3e-4, 300, "cosine"), (48, 5e-4, 200, "linear"),
        (16, 1e-3, 200, "linear"), (24, 2e-3, 150, "linear"), (96, 2e-4, 200, "linear"), (48, 8e-4, 150, "linear"),
    ]
    for i, (h, lr, steps, sched) in enumerate(slow):
        s.append(Scenario(f"slow_{i}", seed=1000 + i, hidden=h, lr=lr, steps=steps, schedule=sched,
                          notes="slow NLL descent: low lr or tiny width, 150-300 steps"))
    for i, lr in enumerate([3e-2, 1e-1]):
        s.append(Scenario(f"fp16_overflow_{i}", seed=800 + i, train_pairs=24, lr=lr, dtype="float16",
                          schedule="constant", notes="float16 autocast + loss scaling, lr high on a memorisable set"))
    return s


def make_pairs(rng: random.Random, n: int, perm: list[int], *, swap: float = 0.0, noisy: float = 0.0,
               near_miss: int = 0) -> list[dict]:
    rows = []
    for _ in range(n):
        prompt = [rng.randrange(GOOD) for _ in range(K)]
        answer = [perm[w] if rng.random() >= WORD_NOISE else rng.randrange(GOOD) for w in prompt]
        rejected = list(answer)
        if near_miss:
            for pos in rng.sample(range(K), near_miss):
                rejected[pos] = (rejected[pos] + 1 + rng.randrange(GOOD - 1)) % GOOD  # another good word
        else:
            for pos in rng.sample(range(K), 3):
                rejected[pos] = GOOD + rng.randrange(BAD)
        if noisy and rng.random() < noisy:
            answer = [rng.randrange(len(WORDS)) for _ in range(K)]
        if swap and rng.random() < swap:
            answer, rejected = rejected, answer
        text = lambda ws: " ".join(WORDS[w] for w in ws)  # noqa: E731
        rows.append({"prompt": text(prompt), "chosen": text(answer), "rejected": text(rejected)})
    return rows


def build_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator([" ".join(WORDS)] * 50 + ["user assistant\n"] * 50, trainer)  # each word one token
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tokenizer.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    return tokenizer


def save_model(path: Path, tokenizer, hidden: int, seed: int) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, bos_token_id=None,
    )
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def run(sc: Scenario, tokenizer, work: Path) -> list[dict]:
    rng = random.Random(sc.seed)
    perm = list(range(GOOD))
    random.Random(0).shuffle(perm)  # one task for every run: only the data quality varies
    d = work / sc.name
    d.mkdir()
    save_model(d / "model", tokenizer, sc.hidden, sc.seed)
    write_jsonl(d / "train.jsonl", make_pairs(rng, sc.train_pairs or TRAIN_PAIRS, perm, swap=sc.swap_frac,
                                              noisy=sc.noisy_chosen, near_miss=sc.near_miss))
    write_jsonl(d / "eval.jsonl", make_pairs(random.Random(1), EVAL_PAIRS, perm, near_miss=sc.near_miss))
    model = d / "model"
    if sc.sft_steps:
        model = sft_first(sc, d)
    config = {
        "model": str(model), "dataset": str(d / "train.jsonl"), "eval_dataset": str(d / "eval.jsonl"),
        "device": "cpu", "dtype": sc.dtype, "max_length": 48, "max_prompt_length": 24, "beta": sc.beta,
        "learning_rate": sc.lr, "batch_size": sc.batch, "max_steps": sc.steps, "seed": sc.seed,
        "lr_scheduler": sc.schedule, "warmup_steps": sc.warmup, "eval_every": 10, "logging_every": 1,
        "output_dir": str(d / "out"),
    }
    return train_for_trace(sc.name, d, config)


def train_for_trace(name: str, d: Path, config: dict) -> list[dict]:
    """Run our trainer on `config` in folder `d` (its run.yaml and metrics.jsonl land there) and return
    the --metrics-out rows."""
    import yaml

    from trainer.worker import main as trainer_main

    (d / "run.yaml").write_text(yaml.safe_dump(config))
    out = d / "metrics.jsonl"
    rc = trainer_main([str(d / "run.yaml"), "--metrics-out", str(out), "--quiet"])
    if rc != 0:
        raise SystemExit(f"{name}: the trainer failed (exit {rc})")
    return [json.loads(line) for line in out.read_text().splitlines() if line.strip()]


def write_runs(runs: list, run_one, tokenizer, folder: Path, meta_path: Path, only: str) -> None:
    """Run every run whose name starts with `only` (run_one(run, tokenizer, work) -> rows), write its
    trace into `folder` and its settings into `meta_path` (kept after each run, so a crash loses one)."""
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in runs:
            if not r.name.startswith(only):
                continue
            t0 = time.perf_counter()
            rows = run_one(r, tokenizer, Path(tmp))
            write_trace(folder / f"{r.name}.jsonl.gz", rows)
            meta[r.name] = {k: v for k, v in asdict(r).items() if k != "name"}
            meta_path.write_text(json.dumps(dict(sorted(meta.items())), indent=1) + "\n")
            train = [x for x in rows if "loss" in x]
            print(f"{r.name:26s} {time.perf_counter() - t0:5.1f}s loss {train[0]['loss']}->{train[-1]['loss']}",
                  flush=True)


def sft_first(sc: Scenario, d: Path) -> Path:
    """Train the fresh model on the chosen responses alone (beta ~ 0) and return its checkpoint folder."""
    import yaml

    from trainer.worker import main as trainer_main

    config = {
        "model": str(d / "model"), "dataset": str(d / "train.jsonl"), "device": "cpu", "max_length": 48,
        "max_prompt_length": 24, "beta": 1e-4, "learning_rate": 3e-3, "batch_size": 8, "max_steps": sc.sft_steps,
        "seed": sc.seed, "lr_scheduler": "constant", "warmup_steps": 20, "eval_fraction": 0.0,
        "output_dir": str(d / "sft"),
    }
    (d / "sft.yaml").write_text(yaml.safe_dump(config))
    if trainer_main([str(d / "sft.yaml"), "--quiet"]) != 0:
        raise SystemExit(f"{sc.name}: the SFT phase failed")
    return d / "sft" / f"checkpoint-{sc.sft_steps}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="", help="Run only scenarios whose name starts with this.")
    ap.add_argument("--steps", type=int, default=0, help="Override steps per run (for a quick look).")
    args = ap.parse_args()
    import torch
    from transformers.utils import logging as hf_logging

    torch.set_num_threads(1)
    hf_logging.set_verbosity_error()
    tokenizer = build_tokenizer()
    TRACES.mkdir(parents=True, exist_ok=True)
    meta_path = TRACES / "real_scenarios.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    with tempfile.TemporaryDirectory() as tmp:
        for sc in scenarios():
            if not sc.name.startswith(args.only):
                continue
            if args.steps:
                sc.steps = args.steps
            t0 = time.perf_counter()
            rows = run(sc, tokenizer, Path(tmp))
            write_trace(TRACES / f"real_{sc.name}.jsonl.gz", rows)
            meta[f"real_{sc.name}"] = {k: v for k, v in asdict(sc).items() if k != "name"}
            train = [r for r in rows if "loss" in r]
            ev = [r for r in rows if "eval/nll_loss" in r]
            fmt = lambda v: "null" if v is None else f"{v:.2f}"  # noqa: E731
            print(f"{sc.name:22s} {time.perf_counter() - t0:5.1f}s  loss {fmt(train[0]['loss'])}->{fmt(train[-1]['loss'])} "
                  f"nll {fmt(train[-1]['nll_loss'])} lor {fmt(train[-1]['log_odds_ratio'])} "
                  f"eval_nll {fmt(ev[-1]['eval/nll_loss']) if ev else '-'}", flush=True)
    meta_path.write_text(json.dumps(dict(sorted(meta.items())), indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
