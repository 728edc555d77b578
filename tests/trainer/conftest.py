"""Shared trainer fixtures: a tiny BPE tokenizer with a ChatML template, a tiny random Llama
saved as a local model directory, preference files and run configs. All built offline in ms."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from orpo_dash.run_config import RunConfig

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

PAIRS = [
    {"prompt": "What is the capital of France?", "chosen": "Paris is the capital.", "rejected": "London, I think."},
    {"prompt": "Say hello.", "chosen": "Hello there!", "rejected": "No."},
    {"prompt": "Add two and two.", "chosen": "Two plus two is four.", "rejected": "Five."},
    {"prompt": "Name a colour.", "chosen": "Blue is a colour.", "rejected": "A dog."},
    {"prompt": "Is water wet?", "chosen": "Water makes things wet.", "rejected": "Water is dry."},
    {"prompt": "Count to three.", "chosen": "One, two, three.", "rejected": "Three, one."},
    {"prompt": "What do cats say?", "chosen": "Cats say meow.", "rejected": "Cats bark loudly."},
    {"prompt": "Spell cat.", "chosen": "C, A, T.", "rejected": "K, A, T, T."},
    {"prompt": "Give a greeting.", "chosen": "Good morning!", "rejected": "Go away."},
    {"prompt": "Which is bigger, 3 or 7?", "chosen": "Seven is bigger.", "rejected": "Three is bigger."},
    {"prompt": "What colour is the sky?", "chosen": "The sky is blue.", "rejected": "The sky is green."},
    {"prompt": "Say thanks.", "chosen": "Thank you!", "rejected": "Whatever."},
]


def build_tokenizer(chat_template: str | None = CHATML) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    corpus = [text for pair in PAIRS for text in pair.values()] + ["user assistant system\n"]
    tok.train_from_iterator(corpus, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    if chat_template:
        tokenizer.chat_template = chat_template
    return tokenizer


def build_model(vocab_size: int, seed: int = 0) -> Any:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        eos_token_id=2, pad_token_id=0, bos_token_id=None, tie_word_embeddings=False,
    )
    return LlamaForCausalLM(config)


@pytest.fixture(scope="session")
def tokenizer() -> Any:
    return build_tokenizer()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory, tokenizer: Any) -> Path:
    """A random tiny Llama + tokenizer saved like any local model directory."""
    path = tmp_path_factory.mktemp("tiny-llama")
    build_model(len(tokenizer)).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def pairs_file(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "pairs.jsonl", PAIRS)


@pytest.fixture
def make_config(tmp_path: Path, tiny_model_dir: Path, pairs_file: Path):
    """RunConfig for a fast CPU run on the tiny model; keyword arguments override fields."""

    def make(**overrides: Any) -> RunConfig:
        fields: dict[str, Any] = dict(
            model=str(tiny_model_dir), dataset=str(pairs_file), eval_fraction=0.25, max_length=64,
            max_prompt_length=32, batch_size=2, learning_rate=1e-2, max_steps=3, seed=0,
            output_dir=str(tmp_path / "out"), lr_scheduler="constant",
            # sys/ metrics are wall-clock samples: off, so tests that compare reports exactly stay exact.
            system_metrics_seconds=0,
        )
        fields.update(overrides)
        return RunConfig(**fields)

    return make


@pytest.fixture(scope="session")
def pair_rows() -> list[dict]:
    return PAIRS


@pytest.fixture(scope="session")
def tiny_model(tokenizer: Any):
    """Factory for fresh random tiny Llamas matching `tokenizer` (same seed, same weights)."""
    return lambda seed=0: build_model(len(tokenizer), seed)


class RecordingReporter:
    """Keeps every call; asks to stop once `stop_after` steps have been reported."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.points: list[tuple[int, dict[str, float]]] = []
        self.statuses: list[tuple[str, int | None, str | None]] = []
        self.logs: list[str] = []
        self.sample_calls: list[tuple[int, list[dict]]] = []
        self.phases: list[tuple[str, int | None, int | None]] = []
        self.stop_after = stop_after
        self.closed = False

    def metrics(self, step: int, values) -> None:
        self.points.append((step, dict(values)))

    def status(self, status: str, *, total_steps: int | None = None, error: str | None = None) -> None:
        self.statuses.append((status, total_steps, error))

    def log(self, text: str) -> None:
        self.logs.append(text)

    def samples(self, step: int, samples: list[dict]) -> None:
        self.sample_calls.append((step, samples))

    def phase(self, name: str, *, done: int | None = None, total: int | None = None) -> None:
        self.phases.append((name, done, total))

    def stop_requested(self) -> bool:
        steps = [s for s, values in self.points if "loss" in values]
        return self.stop_after is not None and bool(steps) and steps[-1] >= self.stop_after

    def close(self) -> None:
        self.closed = True

    def train(self, *, timing: bool = False) -> dict[int, dict[str, float]]:
        """Train metrics by step (without the wall-clock ones unless timing)."""
        skip = () if timing else ("tokens_per_sec", "step_time")
        return {s: {k: v for k, v in values.items() if k not in skip} for s, values in self.points if "loss" in values}

    def eval(self) -> dict[int, dict[str, float]]:
        return {s: values for s, values in self.points if "eval/loss" in values}


@pytest.fixture
def recorder():
    return RecordingReporter


@pytest.fixture(scope="session")
def tokenizer_factory():
    """build_tokenizer, e.g. tokenizer_factory(chat_template=None) for the plain fallback."""
    return build_tokenizer
