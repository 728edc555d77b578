"""The packed forward (shared prompt, packed rows, chunked projection) against the plain path:
two padded sequences per pair, full logits, `orpo_sums`. Same loss, same gradients."""

from __future__ import annotations

from collections import Counter
from dataclasses import fields

import pytest
import torch

from trainer.data import Pair, TokenizedPair, collate, tokenize_pair
from trainer.forward import PairScorer
from trainer.loss import ORPOSums, nll_labels, orpo_sums, pair_sums
from trainer.packing import CHOSEN, PROMPT, REJECTED, pack_pairs


def _pairs(tokenizer, pair_rows, count: int = 5) -> list[TokenizedPair]:
    out = []
    for row in pair_rows[:count]:
        pair = Pair([{"role": "user", "content": row["prompt"]}], [{"role": "assistant", "content": row["chosen"]}],
                    [{"role": "assistant", "content": row["rejected"]}])
        tokenized = tokenize_pair(tokenizer, pair, max_length=64, max_prompt_length=32, counts=Counter())
        assert tokenized is not None
        out.append(tokenized)
    return out


def _plain(model, pairs, pad: int, *, prompt_loss: bool) -> ORPOSums:
    batch = collate(pairs, pad)
    n = len(pairs)
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits
    sft = nll_labels(batch["input_ids"][:n], batch["attention_mask"][:n], prompt_loss=prompt_loss)
    return orpo_sums(logits, batch["labels"], sft)


def _objective_and_grads(model, sums_fn) -> tuple[ORPOSums, list[torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    sums = sums_fn()
    # the training objective of one micro-batch that is the whole batch
    sums.objective(0.5, nll_tokens=sums.nll_tokens.detach(), pairs=sums.pairs).backward()
    return sums.detach(), [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("prompt_loss", [False, True])
@pytest.mark.parametrize(("row_tokens", "chunk_rows"), [(512, 10_000), (1, 10_000), (60, 7)],
                         ids=["one-row", "row-per-pair", "packed-rows-chunked"])
def test_packed_forward_matches_the_plain_path(tokenizer, tiny_model, pair_rows, prompt_loss: bool,
                                               row_tokens: int, chunk_rows: int) -> None:
    # float64, so differences are rounding; Llama's RMSNorm still computes in float32, which leaves
    # about 1e-7 relative on the gradients of the layers (a response seeing the other's tokens: ~1).
    model = tiny_model().double()
    pairs = _pairs(tokenizer, pair_rows)
    pad = tokenizer.pad_token_id
    packed = pack_pairs(pairs, pad, prompt_loss=prompt_loss, row_tokens=row_tokens)
    scorer = PairScorer(model, chunk_elements=chunk_rows * len(tokenizer))

    plain, plain_grads = _objective_and_grads(model, lambda: _plain(model, pairs, pad, prompt_loss=prompt_loss))
    fast, fast_grads = _objective_and_grads(model, lambda: pair_sums(scorer(packed)))

    for f in fields(ORPOSums):
        torch.testing.assert_close(getattr(fast, f.name).double(), getattr(plain, f.name).double(),
                                   rtol=1e-10, atol=1e-10, msg=f.name)
    for (name, _), got, expected in zip(model.named_parameters(), fast_grads, plain_grads, strict=True):
        scale = expected.abs().max().item()  # rounding scales with the tensor's size, not each element's
        torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6 * scale, msg=name)


def test_float32_packed_forward_within_rounding_of_the_plain_path(tokenizer, tiny_model, pair_rows) -> None:
    model = tiny_model()
    pairs = _pairs(tokenizer, pair_rows, count=8)
    packed = pack_pairs(pairs, tokenizer.pad_token_id, prompt_loss=True, row_tokens=100)
    plain, plain_grads = _objective_and_grads(model, lambda: _plain(model, pairs, tokenizer.pad_token_id, prompt_loss=True))
    fast, fast_grads = _objective_and_grads(model, lambda: pair_sums(PairScorer(model, chunk_elements=3000)(packed)))
    loss = fast.reduce(0.5).loss.item()
    assert loss == pytest.approx(plain.reduce(0.5).loss.item(), abs=1e-5)
    for got, expected in zip(fast_grads, plain_grads, strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)


def test_eval_without_grad_gives_the_same_sums(tokenizer, tiny_model, pair_rows) -> None:
    model = tiny_model()
    pairs = _pairs(tokenizer, pair_rows)
    packed = pack_pairs(pairs, tokenizer.pad_token_id, prompt_loss=False)
    with torch.no_grad():
        chunked = pair_sums(PairScorer(model, chunk_elements=3 * len(tokenizer))(packed))
        whole = pair_sums(PairScorer(model)(packed))
    torch.testing.assert_close(chunked.as_tensor(), whole.as_tensor())


def test_layout_of_one_pair() -> None:
    pair = TokenizedPair(prompt_ids=[10, 11, 12], chosen_ids=[20, 21, 22], rejected_ids=[30, 31, 32, 33])
    packed = pack_pairs([pair], 0, prompt_loss=True)
    # no padding; a response's last token predicts nothing and nothing attends to it, so it is not fed in
    assert packed.input_ids.tolist() == [[10, 11, 12, 20, 21, 30, 31, 32]]
    # the rejected response continues from the prompt's end, not from the chosen one's
    assert packed.position_ids.tolist() == [[0, 1, 2, 3, 4, 3, 4, 5]]
    assert packed.branch.tolist() == [[PROMPT] * 3 + [CHOSEN] * 2 + [REJECTED] * 3]
    # prompt tokens 11, 12 (prompt_loss); chosen 20 from the prompt's end, 21 from 20, ...; rejected likewise
    assert packed.targets.tolist() == [11, 12, 20, 21, 22, 30, 31, 32, 33]
    assert packed.sources.tolist() == [0, 1, 2, 3, 4, 2, 5, 6, 7]
    assert packed.in_sft.tolist() == [True] * 5 + [False] * 4
    assert packed.in_chosen.tolist() == [False] * 2 + [True] * 3 + [False] * 4
    mask = packed.attention_mask()[0, 0]
    assert mask[5].tolist() == [True, True, True, False, False, True, False, False]  # rejected: prompt + itself
    assert mask[4].tolist() == [True] * 5 + [False] * 3  # chosen never sees the rejected response
    without_prompt_loss = pack_pairs([pair], 0, prompt_loss=False)
    assert without_prompt_loss.targets.tolist() == [20, 21, 22, 30, 31, 32, 33]  # prompt positions are never projected


def test_padding_attends_to_padding_only() -> None:
    pairs = [TokenizedPair([1, 2], [3, 5], [4, 6]), TokenizedPair([1], [3, 5], [4, 6])]
    packed = pack_pairs(pairs, 0, prompt_loss=False, row_tokens=1)  # one pair per row: the second is padded
    assert packed.input_ids.tolist() == [[1, 2, 3, 4], [1, 3, 4, 0]]
    mask = packed.attention_mask()[1, 0]
    assert mask[3].tolist() == [False, False, False, True]  # no empty softmax row, no real token seen
    assert not mask[:3, 3].any()  # and no real token sees it


def test_pairs_are_packed_into_few_rows_without_cutting_a_pair() -> None:
    pairs = [TokenizedPair([1] * p, [2] * 3, [3] * 3) for p in (6, 1, 3, 2)]  # fed-in lengths 10, 5, 7, 6
    packed = pack_pairs(pairs, 0, prompt_loss=False, row_tokens=12)
    # 28 tokens: 3 rows, filled evenly (longest first, onto the shortest row): [10], [7], [6, 5]
    assert packed.input_ids.shape == (3, 11)
    assert (packed.pair_ids == -1).sum().item() == 3 * 11 - 28
    for k, pair in enumerate(pairs):
        assert (packed.pair_ids == k).sum().item() == len(pair.prompt_ids) + 4
        assert len({row for row in (packed.pair_ids == k).nonzero()[:, 0].tolist()}) == 1


def test_one_token_responses(tokenizer, tiny_model) -> None:
    # a response of one token feeds nothing in: it is scored from the prompt's last position only
    pairs = [TokenizedPair([5, 6, 7], [8], [9]), TokenizedPair([5, 6], [8, 10], [11])]
    model = tiny_model().double()
    with torch.no_grad():
        fast = pair_sums(PairScorer(model)(pack_pairs(pairs, 0, prompt_loss=True)))
        plain = _plain(model, pairs, 0, prompt_loss=True)
    torch.testing.assert_close(fast.as_tensor().double(), plain.as_tensor().double(), rtol=1e-9, atol=1e-9)
