"""Attention pair by pair (trainer/pair_attention.py) against SDPA over the whole packed row with
its mask: the same rule, the same outputs and gradients up to float rounding."""

from __future__ import annotations

import copy
from dataclasses import fields

import pytest
import torch

from tests.trainer.test_forward import _objective_and_grads, _pairs
from trainer import pair_attention
from trainer.forward import PairScorer
from trainer.loss import ORPOSums, pair_sums
from trainer.packing import PROMPT, pack_pairs
from trainer.pair_attention import NAME, use_pair_attention


def test_segments_hold_each_pair_and_its_rule(tokenizer, pair_rows) -> None:  # type: ignore[no-untyped-def]
    # a small row limit puts several pairs in each of several rows, with row padding
    batch = pack_pairs(_pairs(tokenizer, pair_rows), tokenizer.pad_token_id, prompt_loss=False, row_tokens=40)
    assert batch.input_ids.size(0) > 1 and (batch.pair_ids < 0).any()
    seg = batch.pair_segments()
    full = batch.attention_mask()[:, 0]
    rows, length = batch.input_ids.shape
    flat_full = torch.zeros(rows * length, rows * length, dtype=torch.bool)
    for r in range(rows):
        flat_full[r * length:(r + 1) * length, r * length:(r + 1) * length] = full[r]
    valid_slots = 0
    for p in range(batch.n_pairs):
        members = (batch.pair_ids.reshape(-1) == p).nonzero().squeeze(1)
        n = members.numel()
        assert torch.equal(seg.gather[p, :n], members)  # the pair's positions, in order
        assert torch.equal(seg.scatter[members], p * seg.gather.size(1) + torch.arange(n))
        # the segment's rule is the row mask restricted to the pair
        assert torch.equal(seg.mask[p, 0, :n, :n], flat_full[members][:, members])
        assert not seg.mask[p, 0, :n, n:].any()  # real tokens never see a padding slot
        valid_slots += n
    assert valid_slots == int((batch.pair_ids >= 0).sum())
    assert seg.mask[:, 0].any(-1).all()  # no slot attends to nothing (SDPA would give NaN)
    assert (batch.branch[batch.pair_ids < 0] == PROMPT).all()


@pytest.mark.parametrize("prompt_loss", [False, True])
@pytest.mark.parametrize("row_tokens", [40, 4096], ids=["several-rows", "one-row"])
def test_pair_attention_gives_the_masked_row_numbers(tokenizer, tiny_model, pair_rows, prompt_loss: bool,
                                                      row_tokens: int, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    model = tiny_model().double()  # float64: differences are rounding
    batch = pack_pairs(_pairs(tokenizer, pair_rows), tokenizer.pad_token_id, prompt_loss=prompt_loss, row_tokens=row_tokens)
    masked, masked_grads = _objective_and_grads(model, lambda: pair_sums(PairScorer(model)(batch)))

    assert use_pair_attention(model) and model.config._attn_implementation == NAME
    shapes = []
    sdpa = pair_attention.F.scaled_dot_product_attention
    monkeypatch.setattr(pair_attention.F, "scaled_dot_product_attention",
                        lambda *a, **k: shapes.append(a[0].shape) or sdpa(*a, **k))
    segmented, segmented_grads = _objective_and_grads(model, lambda: pair_sums(PairScorer(model)(batch)))

    assert shapes and all(shape[0] == batch.n_pairs for shape in shapes)  # it did run pair by pair
    for f in fields(ORPOSums):
        torch.testing.assert_close(getattr(segmented, f.name).double(), getattr(masked, f.name).double(),
                                   rtol=1e-10, atol=1e-10, msg=f.name)
    for (name, _), got, expected in zip(model.named_parameters(), segmented_grads, masked_grads, strict=True):
        scale = expected.abs().max().item()
        torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6 * scale, msg=name)


def test_generation_without_segments_is_plain_sdpa(tokenizer, tiny_model) -> None:  # type: ignore[no-untyped-def]
    plain = tiny_model()
    segmented = copy.deepcopy(plain)
    use_pair_attention(segmented)
    ids = tokenizer("hello there", return_tensors="pt").input_ids
    a = plain.generate(ids, max_new_tokens=4, do_sample=False)
    b = segmented.generate(ids, max_new_tokens=4, do_sample=False)
    assert torch.equal(a, b)


def test_other_implementations_are_left_alone(tiny_model) -> None:  # type: ignore[no-untyped-def]
    eager = tiny_model()
    eager.config._attn_implementation = "eager"
    assert not use_pair_attention(eager) and eager.config._attn_implementation == "eager"


def test_repeated_key_value_heads_give_the_grouped_numbers(tokenizer, tiny_model, pair_rows, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Where SDPA cannot group heads under a mask (CUDA) the shared heads are repeated: same numbers."""
    model = tiny_model().double()
    assert model.config.num_key_value_heads < model.config.num_attention_heads
    use_pair_attention(model)
    batch = pack_pairs(_pairs(tokenizer, pair_rows), tokenizer.pad_token_id, prompt_loss=True)
    grouped, grouped_grads = _objective_and_grads(model, lambda: pair_sums(PairScorer(model)(batch)))
    monkeypatch.setattr(pair_attention, "GROUPED_HEADS_WITH_MASK", frozenset())
    heads = []
    sdpa = pair_attention.F.scaled_dot_product_attention
    monkeypatch.setattr(pair_attention.F, "scaled_dot_product_attention",
                        lambda *a, **k: heads.append((a[1].size(1), k["enable_gqa"])) or sdpa(*a, **k))
    repeated, repeated_grads = _objective_and_grads(model, lambda: pair_sums(PairScorer(model)(batch)))
    assert set(heads) == {(model.config.num_attention_heads, False)}
    torch.testing.assert_close(repeated.as_tensor(), grouped.as_tensor(), rtol=1e-10, atol=1e-10)
    for got, expected in zip(repeated_grads, grouped_grads, strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-7, atol=1e-9)


def test_a_model_that_drops_the_segments_is_refused_not_trained_wrong(tokenizer, tiny_model, pair_rows) -> None:  # type: ignore[no-untyped-def]
    """Were a model's layers not to pass pair_segments on to their attention, it would run as plain SDPA
    with no mask at all and pairs would see each other: the forward refuses instead."""
    model = tiny_model()
    use_pair_attention(model)
    batch = pack_pairs(_pairs(tokenizer, pair_rows), tokenizer.pad_token_id, prompt_loss=False)
    from transformers import AttentionInterface

    attention = pair_attention.pair_segment_attention
    AttentionInterface.register(NAME, lambda *a, pair_segments=None, **k: attention(*a, **k))
    try:
        with pytest.raises(RuntimeError, match="do not pass extra arguments to their attention"):
            PairScorer(model)(batch)
    finally:
        AttentionInterface.register(NAME, attention)
