"""Loading, normalising, tokenising, truncating, splitting and collating preference pairs."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from orpo_dash.dataset_files import DatasetError, inspect_dataset
from trainer.data import (
    Pair,
    collate,
    load_preference_data,
    normalise,
    split_indices,
    tokenize_pair,
)
from trainer.loss import IGNORE_INDEX

USER = "user"
ROWS = [
    {"prompt": "What is the capital of France?", "chosen": "Paris is the capital.", "rejected": "London, I think."},
    {"prompt": "Say hello.", "chosen": "Hello there!", "rejected": "No."},
]


def _msgs(*turns: tuple[str, str]) -> list[dict[str, str]]:
    return [{"role": r, "content": c} for r, c in turns]


def _write(path: Path, rows: list[dict]) -> Path:
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif path.suffix == ".json":
        path.write_text(json.dumps(rows))
    elif path.suffix == ".csv":
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            for r in rows:
                writer.writerow({k: json.dumps(v) if isinstance(v, list) else v for k, v in r.items()})
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path)
    return path


CONVERSATIONAL = [
    {  # multi-turn prompt, full conversations in chosen/rejected
        "prompt": _msgs((USER, "Name a colour."), ("assistant", "Blue."), (USER, "Another one?")),
        "chosen": _msgs((USER, "Name a colour."), ("assistant", "Blue."), (USER, "Another one?"), ("assistant", "Green.")),
        "rejected": _msgs((USER, "Name a colour."), ("assistant", "Blue."), (USER, "Another one?"), ("assistant", "A dog.")),
    },
    {  # reply turns only
        "prompt": _msgs((USER, "Say thanks.")),
        "chosen": _msgs(("assistant", "Thank you!")),
        "rejected": _msgs(("assistant", "Whatever.")),
    },
]


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv", ".parquet"])
@pytest.mark.parametrize("rows", [ROWS, CONVERSATIONAL], ids=["plain", "conversational"])
def test_every_file_format_loads_the_same_pairs(tmp_path: Path, make_config, tokenizer, suffix: str, rows) -> None:
    path = _write(tmp_path / f"data{suffix}", rows)
    data = load_preference_data(make_config(dataset=str(path), eval_fraction=0.0), tokenizer)
    reference = load_preference_data(make_config(dataset=str(_write(tmp_path / "ref.jsonl", rows)), eval_fraction=0.0), tokenizer)
    assert len(data.train) == len(rows) and data.train == reference.train
    count, columns, preview = inspect_dataset(str(path))
    assert count == len(rows) and set(columns) == {"prompt", "chosen", "rejected"} and preview[0]["chosen"] == rows[0]["chosen"]


def test_conversation_and_reply_only_and_implicit_prompt_normalise_alike() -> None:
    full = normalise(CONVERSATIONAL[0], 0)
    reply_only = normalise({**CONVERSATIONAL[0], "chosen": CONVERSATIONAL[0]["chosen"][3:],
                            "rejected": CONVERSATIONAL[0]["rejected"][3:]}, 0)
    implicit = normalise({"chosen": CONVERSATIONAL[0]["chosen"], "rejected": CONVERSATIONAL[0]["rejected"]}, 0)
    assert full == reply_only == implicit
    assert len(full.prompt) == 3 and full.chosen == _msgs(("assistant", "Green."))


def test_chat_template_tokens_put_end_of_turn_in_the_response(tokenizer) -> None:
    pair = normalise(CONVERSATIONAL[0], 0)
    tp = tokenize_pair(tokenizer, pair, max_length=200, max_prompt_length=150, counts=Counter())
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert tokenizer.decode(tp.prompt_ids).endswith("Another one?<|im_end|>\n<|im_start|>assistant\n")
    assert tokenizer.decode(tp.chosen_ids) == "Green.<|im_end|>\n"
    assert im_end in tp.chosen_ids and im_end in tp.rejected_ids


def test_plain_fallback_without_chat_template(tokenizer_factory) -> None:
    tok = tokenizer_factory(chat_template=None)
    pair = normalise(ROWS[1], 0)
    tp = tokenize_pair(tok, pair, max_length=200, max_prompt_length=100, counts=Counter())
    assert tok.decode(tp.prompt_ids) == "User: Say hello.\nAssistant: "
    assert tok.decode(tp.chosen_ids) == "Hello there!<|im_end|>"


def test_truncation_cuts_prompt_from_the_left_then_the_response(tokenizer) -> None:
    pair = Pair(_msgs((USER, "word " * 40)), _msgs(("assistant", "the quick brown fox " * 10)), _msgs(("assistant", "No.")))
    counts: Counter[str] = Counter()
    full_prompt = tokenize_pair(tokenizer, pair, max_length=1000, max_prompt_length=999, counts=Counter()).prompt_ids
    tp = tokenize_pair(tokenizer, pair, max_length=24, max_prompt_length=16, counts=counts)
    assert tp.prompt_ids == full_prompt[-16:]  # the end of the prompt, next to the reply, survives
    assert len(tp.prompt_ids) + len(tp.chosen_ids) == 24 and tp.chosen_ids
    assert counts["truncated prompts"] == 1 and counts["truncated responses"] == 1
    # no room at all: dropped and counted, never a zero-token response
    assert tokenize_pair(tokenizer, pair, max_length=16, max_prompt_length=16, counts=counts) is None
    assert counts["dropped: prompt leaves no room for the response"] == 1


def test_empty_identical_and_missing_columns_are_reported(tmp_path: Path, make_config, tokenizer) -> None:
    rows = ROWS + [{"prompt": "Hi", "chosen": "", "rejected": "x"}, {"prompt": "Hi", "chosen": "Same.", "rejected": "Same."}]
    data = load_preference_data(make_config(dataset=str(_write(tmp_path / "d.jsonl", rows)), eval_fraction=0.0), tokenizer)
    assert len(data.train) == 2
    assert data.counts == {"rejected: empty chosen or rejected": 1, "rejected: identical chosen and rejected": 1}
    bad = _write(tmp_path / "bad.jsonl", [{"question": "q", "chosen": "a", "answer": "b"}])
    with pytest.raises(DatasetError, match=r"missing column\(s\) 'prompt', 'rejected'; found columns: question, chosen, answer"):
        load_preference_data(make_config(dataset=str(bad)), tokenizer)
    with pytest.raises(DatasetError, match="not found"):
        inspect_dataset(str(tmp_path / "nope.jsonl"))


def test_collate_puts_chosen_first_and_masks_prompt_and_padding(tokenizer) -> None:
    pairs = [tokenize_pair(tokenizer, normalise(r, i), max_length=64, max_prompt_length=32, counts=Counter())
             for i, r in enumerate(ROWS)]
    batch = collate(pairs, tokenizer.pad_token_id)
    assert batch["input_ids"].shape[0] == 4
    for row, (p, resp) in enumerate([(p.prompt_ids, p.chosen_ids) for p in pairs] + [(p.prompt_ids, p.rejected_ids) for p in pairs]):
        n = len(p) + len(resp)
        assert batch["input_ids"][row, :n].tolist() == p + resp
        assert (batch["labels"][row, : len(p)] == IGNORE_INDEX).all()  # prompt never scored
        assert batch["labels"][row, len(p): n].tolist() == resp
        assert (batch["labels"][row, n:] == IGNORE_INDEX).all() and (batch["attention_mask"][row, n:] == 0).all()


def test_split_is_deterministic_and_disjoint(make_config, tokenizer) -> None:
    train, held = split_indices(12, 0.25, seed=3)
    assert (train, held) == split_indices(12, 0.25, seed=3) and len(held) == 3
    assert sorted(train + held) == list(range(12)) and split_indices(12, 0.25, seed=4)[1] != held
    data = load_preference_data(make_config(eval_fraction=0.25), tokenizer)
    assert len(data.train) == 9 and len(data.eval) == 3 and len(data.eval_prompts) == 3


def test_light_modules_do_not_import_torch(pairs_file: Path) -> None:
    code = (
        "import sys, trainer, trainer.reporting; from orpo_dash.dataset_files import inspect_dataset; "
        f"print(inspect_dataset({str(pairs_file)!r})[0]); assert 'torch' not in sys.modules, 'torch imported'"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "12"
