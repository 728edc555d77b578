"""Runs of another ORPO implementation: TRL's ORPOTrainer, healthy and pushed into pitfalls.

Runs in its own benchmark-only environment (trl is not a dependency of the project):

    python -m venv /tmp/trl-env && /tmp/trl-env/bin/pip install torch==2.13.0 trl transformers datasets
    (or, sharing the project venv's torch/transformers: python -m venv /tmp/trl-env, a .pth file in it
    naming /work/main/.venv's site-packages, then /tmp/trl-env/bin/pip install trl datasets)
    /tmp/trl-env/bin/python benchmarks/alerts/trl_runs.py [--set heldout|tuning|heldout2] [PREFIX]

Three sets of runs, each written where its collection lives:

- `heldout` (the first held-out set, heldout/trl_*): model a small Llama built locally with
  from_config (2 layers, hidden 64), a byte-level BPE tokenizer trained on the bundled demo
  preference set (orpo_dash/bundled/orpo_demo_prefs.jsonl), which is also the data (the last 40
  pairs held out for eval); 150 steps.
- `tuning` (traces/trl_*, added to the tuning collection): the same data and tokenizer, new seeds,
  a sweep of learning rates (slow-but-insufficient NLL descent next to runs that do learn), longer
  runs, and widths 32 and 64.
- `heldout2` (heldout2/trl_*, never tuned on): new data (the demo set regenerated with another seed
  by make_demo_prefs.generate, the FIRST 40 pairs held out), its own tokenizer, a different model
  size (3 layers, hidden 96), new seeds, 150-250 steps.

Each run's trainer_state.json is written, gzipped, as TRL wrote it: score.py and the labellers
read it through diagnose's own import path (load_metrics_file). ~1 min a run on one thread.
"""

from __future__ import annotations

import gzip
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).parent
PREFS = ROOT / "orpo_dash" / "bundled" / "orpo_demo_prefs.jsonl"
EVAL_PAIRS = 40

# set -> (folder, data seed (None: the bundled file, eval = its last 40 pairs; else regenerated with
# that seed, eval = its first 40), layers, hidden, {name: (learning rate, beta, seed, steps)})
SETS: dict[str, tuple[Path, int | None, int, int, dict[str, tuple[float, float, int, int]]]] = {
    "heldout": (HERE / "heldout", None, 2, 64, {
        "healthy_0": (1e-3, 0.1, 1, 150),
        "healthy_1": (5e-4, 0.2, 2, 150),
        "lr_too_high_0": (1e-1, 0.1, 3, 150),
        "lr_too_low_0": (1e-8, 0.1, 4, 150),
        "beta_too_high_0": (1e-3, 50.0, 5, 150),
    }),
    "tuning": (HERE / "traces", None, 2, 64, {
        "lr3e-4_0": (3e-4, 0.1, 101, 150),
        "lr1e-3_0": (1e-3, 0.1, 102, 150),
        "lr2e-3_0": (2e-3, 0.1, 103, 150),
        "lr5e-3_0": (5e-3, 0.1, 104, 150),
        "lr1e-3_long_0": (1e-3, 0.1, 105, 300),
        "lr3e-3_long_0": (3e-3, 0.2, 106, 300),
        "lr_too_low_1": (1e-7, 0.1, 107, 150),
        "beta_too_high_1": (2e-3, 20.0, 108, 150),
        "lr5e-4_0": (5e-4, 0.1, 109, 150),
        "lr7e-4_0": (7e-4, 0.2, 110, 150),
        "lr1.5e-3_0": (1.5e-3, 0.1, 111, 150),
        "lr6e-4_long_0": (6e-4, 0.1, 112, 300),
        "lr2e-3_long_0": (2e-3, 0.1, 113, 250),
    }),
    "heldout2": (HERE / "heldout2", 777, 3, 96, {
        "lr5e-4_0": (5e-4, 0.1, 201, 150),
        "lr2e-3_0": (2e-3, 0.1, 202, 200),
        "lr4e-3_long_0": (4e-3, 0.2, 203, 250),
        "lr_too_low_0": (1e-8, 0.1, 204, 150),
        "lr_too_high_0": (1e-1, 0.1, 205, 150),
        "beta_too_high_0": (2e-3, 40.0, 206, 150),
        "lr1e-3_0": (1e-3, 0.1, 207, 200),
        "lr7e-4_long_0": (7e-4, 0.2, 208, 250),
    }),
}
WIDTH = {"lr5e-3_0": 32, "lr1e-3_long_0": 32, "lr7e-4_0": 32, "lr2e-3_long_0": 32}  # tuning runs at another width than their set's


def tokenizer(texts: list[str]):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=800, special_tokens=["<|endoftext|>", "<|pad|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|pad|>")


def main() -> None:
    import torch
    from datasets import Dataset
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.utils import logging as hf_logging

    try:
        from trl.experimental.orpo import ORPOConfig, ORPOTrainer
    except ImportError:
        from trl import ORPOConfig, ORPOTrainer  # older TRL

    torch.set_num_threads(1)
    hf_logging.set_verbosity_error()
    argv = sys.argv[1:]
    which = "heldout"
    if argv[:1] == ["--set"]:
        which, argv = argv[1], argv[2:]
    folder, data_seed, layers, hidden, runs = SETS[which]
    if data_seed is None:
        pairs = [json.loads(line) for line in PREFS.read_text().splitlines() if line.strip()]
        train, evals = pairs[:-EVAL_PAIRS], pairs[-EVAL_PAIRS:]
    else:
        sys.path.insert(0, str(PREFS.parent))
        from make_demo_prefs import generate

        pairs = [{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in generate(data_seed)]
        train, evals = pairs[EVAL_PAIRS:], pairs[:EVAL_PAIRS]
    tok = tokenizer([p[k] for p in pairs for k in ("prompt", "chosen", "rejected")])
    folder.mkdir(exist_ok=True)
    only = argv[0] if argv else ""
    for name, (lr, beta, seed, steps) in runs.items():
        if not name.startswith(only):
            continue
        torch.manual_seed(seed)
        width = WIDTH.get(name, hidden) if which == "tuning" else hidden
        model = LlamaForCausalLM(LlamaConfig(
            vocab_size=len(tok), hidden_size=width, intermediate_size=2 * width, num_hidden_layers=layers,
            num_attention_heads=4,
            num_key_value_heads=4, max_position_embeddings=256, pad_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id, bos_token_id=None))
        with tempfile.TemporaryDirectory() as out:
            args = ORPOConfig(
                output_dir=out, learning_rate=lr, beta=beta, max_steps=steps, per_device_train_batch_size=8,
                per_device_eval_batch_size=20, logging_steps=1, eval_strategy="steps", eval_steps=10,
                save_strategy="no", report_to=[], seed=seed, lr_scheduler_type="linear", warmup_steps=10,
                max_length=128, use_cpu=True, disable_tqdm=True, dataloader_num_workers=0,
            )
            trainer = ORPOTrainer(model=model, args=args, train_dataset=Dataset.from_list(train),
                                  eval_dataset=Dataset.from_list(evals),
                                  processing_class=tok)
            trainer.train()
            trainer.state.save_to_json(str(Path(out) / "trainer_state.json"))
            state = (Path(out) / "trainer_state.json").read_bytes()
        (folder / f"trl_{name}.json.gz").write_bytes(gzip.compress(state, mtime=0))
        hist = [h for h in json.loads(state)["log_history"] if "loss" in h]
        print(f"trl_{name:18s} loss {hist[0]['loss']:.3f} -> {hist[-1]['loss']:.3f}", flush=True)


if __name__ == "__main__":
    main()
