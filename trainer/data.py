"""Preference pairs: load, normalise to messages, tokenise, truncate, split and collate.

Formats (one row per pair):
* plain text: {"prompt": str, "chosen": str, "rejected": str}
* conversational: lists of {"role", "content"} messages. The prompt may have several turns;
  chosen/rejected may repeat the prompt (full conversations) or hold only the reply turn(s).
  Without a `prompt` column, the messages chosen and rejected share at the start become the prompt.

Tokenisation uses the tokenizer's chat template: prompt tokens = the prompt rendered with
add_generation_prompt=True; response tokens = the full conversation's tokens after them, so the
end-of-turn token (e.g. <|im_end|>) belongs to the response and is learned. Tokenizers without
a chat template get a plain fallback: "User: ...\\nAssistant: " + response + eos.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import torch

from orpo_dash.dataset_files import (
    DatasetError,
    check_columns,
    columns_of,
    read_records,
    resolve_local,
)
from orpo_dash.run_config import RunConfig
from trainer.loss import IGNORE_INDEX

Messages = list[dict[str, str]]


@dataclass
class Pair:
    """One normalised preference pair; chosen/rejected hold only the continuation after the prompt."""

    prompt: Messages
    chosen: Messages
    rejected: Messages


@dataclass
class TokenizedPair:
    prompt_ids: list[int]
    chosen_ids: list[int]  # response tokens only
    rejected_ids: list[int]


@dataclass
class PreferenceData:
    train: list[TokenizedPair]
    eval: list[TokenizedPair]
    eval_prompts: list[Messages]
    # reason -> count, for the run log: rejected rows, dropped pairs, truncations
    counts: Counter[str] = field(default_factory=Counter)


# ---------------------------------------------------------------- loading


def load_records(name: str) -> list[dict[str, Any]]:
    """Rows of a local file, the bundled dataset, or (network permitting) a HF datasets name."""
    path = resolve_local(name)
    if path is not None:
        records = read_records(path)
    else:
        records = _load_hub(name)
    if not records:
        raise DatasetError(f"dataset {name!r} has no rows")
    check_columns(columns_of(records), records[:1], source=name)
    return records


def _load_hub(name: str) -> list[dict[str, Any]]:
    try:
        import datasets
    except ImportError as exc:
        raise DatasetError(
            f"{name!r} is not a local file, and loading Hugging Face datasets needs the `datasets` package "
            "(pip install datasets) and network access; or download the pairs as .jsonl and pass the file path"
        ) from exc
    try:
        return list(datasets.load_dataset(name, split="train"))
    except Exception as exc:  # network, auth, missing split: all surface as one clear message
        raise DatasetError(f"could not load Hugging Face dataset {name!r} (offline or wrong name?): {exc}") from exc


# ---------------------------------------------------------------- normalising


def _as_messages(value: Any, *, role: str, what: str, row: int) -> Messages:
    if isinstance(value, str):
        return [{"role": role, "content": value}]
    if isinstance(value, list) and all(isinstance(m, dict) and "role" in m and "content" in m for m in value):
        return [{"role": str(m["role"]), "content": "" if m["content"] is None else str(m["content"])} for m in value]
    raise DatasetError(f"row {row}: {what} must be a string or a list of {{role, content}} messages, got {value!r:.80}")


def normalise(record: dict[str, Any], row: int) -> Pair:
    """One row -> Pair, stripping a repeated prompt from full-conversation responses."""
    chosen = _as_messages(record.get("chosen"), role="assistant", what="chosen", row=row)
    rejected = _as_messages(record.get("rejected"), role="assistant", what="rejected", row=row)
    if record.get("prompt") is not None:
        prompt = _as_messages(record["prompt"], role="user", what="prompt", row=row)
    else:  # implicit prompt: the shared leading messages
        shared = 0
        while shared < min(len(chosen), len(rejected)) and chosen[shared] == rejected[shared]:
            shared += 1
        prompt = chosen[:shared]
    if chosen[: len(prompt)] == prompt:
        chosen = chosen[len(prompt):]
    if rejected[: len(prompt)] == prompt:
        rejected = rejected[len(prompt):]
    return Pair(prompt=prompt, chosen=chosen, rejected=rejected)


def rejection_reason(pair: Pair) -> str | None:
    """Why a pair carries no usable signal, or None."""
    if not any(m["content"].strip() for m in pair.prompt):
        return "empty prompt"
    if not any(m["content"].strip() for m in pair.chosen) or not any(m["content"].strip() for m in pair.rejected):
        return "empty chosen or rejected"
    if pair.chosen == pair.rejected:
        return "identical chosen and rejected"
    return None


# ---------------------------------------------------------------- tokenising


def has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def encode_prompt(tokenizer: Any, prompt: Messages) -> list[int]:
    """Prompt tokens ending where the assistant's reply starts."""
    if has_chat_template(tokenizer):
        text = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
        return tokenizer(text, add_special_tokens=False)["input_ids"]
    return tokenizer(_plain_prompt(prompt))["input_ids"]


def _plain_prompt(prompt: Messages) -> str:
    return "".join(f"{m['role'].capitalize()}: {m['content']}\n" for m in prompt) + "Assistant: "


def _plain_response(tokenizer: Any, response: Messages) -> list[int]:
    """Fallback rendering: each assistant turn ends with eos; other turns read "Role: content"."""
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    ids: list[int] = []
    for i, m in enumerate(response):
        if m["role"] == "assistant":
            text = ("Assistant: " if i else "") + m["content"]
            ids += tokenizer(text, add_special_tokens=False)["input_ids"] + eos
        else:
            ids += tokenizer(f"\n{m['role'].capitalize()}: {m['content']}\n", add_special_tokens=False)["input_ids"]
    return ids


def encode_response(tokenizer: Any, prompt: Messages, prompt_ids: list[int], response: Messages) -> list[int] | None:
    """Response tokens = full-conversation tokens after the prompt tokens (None if the template
    renders the prompt differently inside the full conversation)."""
    if not has_chat_template(tokenizer):
        return _plain_response(tokenizer, response)
    prompt_text = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
    full_text = tokenizer.apply_chat_template(prompt + response, tokenize=False)
    full_ids = tokenizer(full_text, add_special_tokens=False)["input_ids"]
    if full_ids[: len(prompt_ids)] == prompt_ids:
        return full_ids[len(prompt_ids):]
    # BPE merged across the prompt/response boundary: split the text instead of the tokens.
    if full_text.startswith(prompt_text):
        return tokenizer(full_text[len(prompt_text):], add_special_tokens=False)["input_ids"]
    return None


def tokenize_pair(
    tokenizer: Any, pair: Pair, *, max_length: int, max_prompt_length: int, counts: Counter[str]
) -> TokenizedPair | None:
    """Tokenise and truncate one pair; None (and a count) when it cannot be used.

    The prompt is cut from the LEFT (its end, next to the reply, matters most), then each
    response is cut from the right to fit max_length, never to zero tokens.
    """
    prompt_ids = encode_prompt(tokenizer, pair.prompt)
    chosen_ids = encode_response(tokenizer, pair.prompt, prompt_ids, pair.chosen)
    rejected_ids = encode_response(tokenizer, pair.prompt, prompt_ids, pair.rejected)
    if chosen_ids is None or rejected_ids is None:
        counts["dropped: chat template renders the prompt differently inside the conversation"] += 1
        return None
    if not chosen_ids or not rejected_ids:
        counts["dropped: response has no tokens"] += 1
        return None
    if len(prompt_ids) > max_prompt_length:
        prompt_ids = prompt_ids[-max_prompt_length:]
        counts["truncated prompts"] += 1
    budget = max_length - len(prompt_ids)
    if budget < 1:
        counts["dropped: prompt leaves no room for the response"] += 1
        return None
    if len(chosen_ids) > budget or len(rejected_ids) > budget:
        counts["truncated responses"] += 1
        chosen_ids, rejected_ids = chosen_ids[:budget], rejected_ids[:budget]
    if chosen_ids == rejected_ids:
        counts["dropped: chosen and rejected identical after truncation"] += 1
        return None
    return TokenizedPair(prompt_ids, chosen_ids, rejected_ids)


# ---------------------------------------------------------------- the whole pipeline


def _valid_pairs(records: list[dict[str, Any]], counts: Counter[str]) -> list[Pair]:
    pairs = []
    for row, record in enumerate(records):
        pair = normalise(record, row)
        reason = rejection_reason(pair)
        if reason:
            counts[f"rejected: {reason}"] += 1
        else:
            pairs.append(pair)
    return pairs


def split_indices(n: int, eval_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Deterministic (train, eval) indices; eval gets at least one pair when the fraction is > 0."""
    if eval_fraction <= 0 or n < 2:
        return list(range(n)), []
    order = list(range(n))
    random.Random(seed).shuffle(order)
    n_eval = min(n - 1, max(1, round(eval_fraction * n)))
    return sorted(order[n_eval:]), sorted(order[:n_eval])


def load_preference_data(config: RunConfig, tokenizer: Any) -> PreferenceData:
    """Train and eval pairs for a run, tokenised; `counts` explains every pair left out."""
    counts: Counter[str] = Counter()
    pairs = _valid_pairs(load_records(config.dataset), counts)
    if config.eval_dataset:
        train_pairs = pairs
        eval_pairs = _valid_pairs(load_records(config.eval_dataset), counts)
    else:
        train_idx, eval_idx = split_indices(len(pairs), config.eval_fraction, config.seed)
        train_pairs, eval_pairs = [pairs[i] for i in train_idx], [pairs[i] for i in eval_idx]

    def tok(split: list[Pair]) -> list[TokenizedPair]:
        out = []
        for pair in split:
            tp = tokenize_pair(
                tokenizer, pair, max_length=config.max_length, max_prompt_length=config.max_prompt_length, counts=counts
            )
            if tp is not None:
                out.append(tp)
        return out

    train = tok(train_pairs)
    if not train:
        raise DatasetError(f"no usable training pairs in {config.dataset!r} ({dict(counts) or 'empty'})")
    return PreferenceData(train=train, eval=tok(eval_pairs), eval_prompts=[p.prompt for p in eval_pairs], counts=counts)


def collate(pairs: list[TokenizedPair], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Pad chosen and rejected into ONE batch, chosen rows first, so one forward serves both.

    Right padding; labels are IGNORE_INDEX on prompt and padding positions, so only response
    tokens (end-of-turn included) are scored.
    """
    rows = [(p.prompt_ids, p.chosen_ids) for p in pairs] + [(p.prompt_ids, p.rejected_ids) for p in pairs]
    width = max(len(prompt) + len(resp) for prompt, resp in rows)
    input_ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    for i, (prompt, resp) in enumerate(rows):
        ids = prompt + resp
        input_ids[i, : len(ids)] = torch.tensor(ids)
        attention_mask[i, : len(ids)] = 1
        labels[i, len(prompt): len(ids)] = torch.tensor(resp)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


class PairStream:
    """The training order: an endless concatenation of per-epoch permutations of the train pairs.

    Global position p maps to pair perm_e[p % n] with e = p // n and perm_e seeded by
    (seed, e). Optimizer step k consumes positions [k*G, (k+1)*G) for a global batch of G, so
    no pair is dropped at epoch ends, and the data position of a checkpoint is one integer.
    """

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed = n, seed
        self._perms: dict[int, list[int]] = {}

    def _perm(self, epoch: int) -> list[int]:
        if epoch not in self._perms:
            generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
            self._perms = {epoch: torch.randperm(self.n, generator=generator).tolist()}  # keep one epoch cached
        return self._perms[epoch]

    def indices(self, start: int, count: int) -> list[int]:
        return [self._perm(p // self.n)[p % self.n] for p in range(start, start + count)]
