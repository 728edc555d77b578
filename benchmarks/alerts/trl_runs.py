"""Held-out runs of another ORPO implementation: TRL's ORPOTrainer, healthy and pushed into pitfalls.

Runs in its own benchmark-only environment (trl is not a dependency of the project):

    python -m venv /tmp/trl-env && /tmp/trl-env/bin/pip install torch==2.13.0 trl transformers datasets
    /tmp/trl-env/bin/python benchmarks/alerts/trl_runs.py      # a few minutes on one CPU thread

Model: a small Llama built locally with from_config (2 layers, hidden 64) and a byte-level BPE
tokenizer trained on the bundled demo preference set (orpo_dash/bundled/orpo_demo_prefs.jsonl),
which is also the data (the last 40 pairs held out for eval). Each run's trainer_state.json is
written, gzipped, to benchmarks/alerts/heldout/trl_<name>.json.gz as TRL wrote it: score.py and
label_heldout.py read it through diagnose's own import path (load_metrics_file).
"""

from __future__ import annotations

import gzip
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HELDOUT = Path(__file__).parent / "heldout"
PREFS = ROOT / "orpo_dash" / "bundled" / "orpo_demo_prefs.jsonl"
EVAL_PAIRS = 40

# name -> (learning rate, beta, seed)
RUNS = {
    "healthy_0": (1e-3, 0.1, 1),
    "healthy_1": (5e-4, 0.2, 2),
    "lr_too_high_0": (1e-1, 0.1, 3),
    "lr_too_low_0": (1e-8, 0.1, 4),
    "beta_too_high_0": (1e-3, 50.0, 5),
}
STEPS = 150


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
    pairs = [json.loads(line) for line in PREFS.read_text().splitlines() if line.strip()]
    tok = tokenizer([p[k] for p in pairs for k in ("prompt", "chosen", "rejected")])
    train, evals = Dataset.from_list(pairs[:-EVAL_PAIRS]), Dataset.from_list(pairs[-EVAL_PAIRS:])
    HELDOUT.mkdir(exist_ok=True)
    only = sys.argv[1] if len(sys.argv) > 1 else ""
    for name, (lr, beta, seed) in RUNS.items():
        if not name.startswith(only):
            continue
        torch.manual_seed(seed)
        model = LlamaForCausalLM(LlamaConfig(
            vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=4, max_position_embeddings=256, pad_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id, bos_token_id=None))
        with tempfile.TemporaryDirectory() as out:
            args = ORPOConfig(
                output_dir=out, learning_rate=lr, beta=beta, max_steps=STEPS, per_device_train_batch_size=8,
                per_device_eval_batch_size=20, logging_steps=1, eval_strategy="steps", eval_steps=10,
                save_strategy="no", report_to=[], seed=seed, lr_scheduler_type="linear", warmup_steps=10,
                max_length=128, use_cpu=True, disable_tqdm=True, dataloader_num_workers=0,
            )
            trainer = ORPOTrainer(model=model, args=args, train_dataset=train, eval_dataset=evals,
                                  processing_class=tok)
            trainer.train()
            trainer.state.save_to_json(str(Path(out) / "trainer_state.json"))
            state = (Path(out) / "trainer_state.json").read_bytes()
        (HELDOUT / f"trl_{name}.json.gz").write_bytes(gzip.compress(state, mtime=0))
        hist = [h for h in json.loads(state)["log_history"] if "loss" in h]
        print(f"trl_{name:18s} loss {hist[0]['loss']:.3f} -> {hist[-1]['loss']:.3f}", flush=True)


if __name__ == "__main__":
    main()
