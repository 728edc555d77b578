"""One forward pass over packed pairs (`trainer.packing`), down to the per-pair log-prob sums.

Three savings over running chosen and rejected as two padded sequences and scoring full logits:

* the prompt is computed once for both responses, and padding hardly at all (the packing);
* the vocabulary projection runs only on the hidden states that predict a scored token (with the
  default response-only NLL, the prompt positions are never projected);
* the projection and its log-softmax run in chunks of rows; when there is more than one chunk,
  each is recomputed in the backward pass instead of kept, so the [tokens, vocab] logits (the
  largest activation of a small model) are never held whole. The recompute costs one more
  projection of those rows; a single chunk is kept as it is.

Every scored token's log-prob is computed once, and serves both the OR term and the NLL.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from trainer.loss import PairLogps, at_least_float32
from trainer.packing import PackedPairs
from trainer.pair_attention import NAME as PAIR_ATTENTION

# Logits elements per chunk: 2**24 float32 = 64 MiB, e.g. 341 rows of SmolLM2's 49,152 tokens.
CHUNK_ELEMENTS = 2**24


class PairScorer(torch.nn.Module):
    """Wraps a causal LM (plain or PEFT) so one call maps PackedPairs to PairLogps. It is the
    module DistributedDataParallel wraps, so the whole forward runs inside DDP's hooks."""

    def __init__(self, model: Any, *, chunk_elements: int = CHUNK_ELEMENTS) -> None:
        super().__init__()
        self.model = model
        self.chunk_elements = chunk_elements

    def forward(self, batch: PackedPairs) -> PairLogps:
        decoder, lm_head = self.model.get_decoder(), self.model.get_output_embeddings()
        attention = _attention_inputs(self.model, batch)
        hidden = decoder(
            input_ids=batch.input_ids, position_ids=batch.position_ids, use_cache=False, **attention,
        ).last_hidden_state
        segments = attention.get("pair_segments")
        if segments is not None and segments.calls == 0:
            # Its attention ran as plain SDPA without the packed rule: pairs would have seen each other.
            raise RuntimeError(
                f"{type(self.model).__name__}'s layers do not pass extra arguments to their attention, which the "
                "pair-by-pair attention needs; load the model with attn_implementation='eager'"
            )
        scored = hidden.reshape(-1, hidden.size(-1)).index_select(0, batch.sources)
        rows = max(1, self.chunk_elements // lm_head.weight.size(0))
        logps = chunked_token_logps(lm_head, scored, batch.targets, rows=rows)

        n = batch.n_pairs
        def per_pair(mask: torch.Tensor) -> torch.Tensor:
            return logps.new_zeros(n).index_add(0, batch.scored_pair[mask], logps[mask])

        return PairLogps(
            chosen=per_pair(batch.in_chosen), chosen_tokens=batch.chosen_tokens,
            rejected=per_pair(batch.in_rejected), rejected_tokens=batch.rejected_tokens,
            sft=logps[batch.in_sft].sum(), sft_tokens=batch.in_sft.sum(),
        )


def chunked_token_logps(lm_head: Any, hidden: torch.Tensor, targets: torch.Tensor, *, rows: int) -> torch.Tensor:
    """log P(target) for each hidden state row, projecting `rows` rows at a time (float32 log-softmax)."""
    if hidden.size(0) <= rows:
        return _token_logps(lm_head, hidden, targets)
    recompute = torch.is_grad_enabled()  # without a backward pass nothing is kept anyway
    parts = []
    for start in range(0, hidden.size(0), rows):
        h, t = hidden[start: start + rows], targets[start: start + rows]
        if recompute:
            parts.append(checkpoint(_token_logps, lm_head, h, t, use_reentrant=False))
        else:
            parts.append(_token_logps(lm_head, h, t))
    return torch.cat(parts)


def _token_logps(lm_head: Any, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    # cross_entropy is log_softmax + gather in one kernel, without a second [rows, V] copy.
    return -F.cross_entropy(at_least_float32(lm_head(hidden)), targets, reduction="none")


def _attention_inputs(model: Any, batch: PackedPairs) -> dict[str, Any]:
    """The packed attention rule in the form the model's attention takes it: pair segments for the
    pair-by-pair attention (trainer/pair_attention.py), else a custom 4D mask, boolean (True =
    attend) for SDPA and flex, additive float for eager."""
    implementation = getattr(model.config, "_attn_implementation", "sdpa")
    if implementation == PAIR_ATTENTION:
        return {"attention_mask": None, "pair_segments": batch.pair_segments()}
    allowed = batch.attention_mask()
    if implementation in ("sdpa", "flex_attention"):
        return {"attention_mask": allowed}
    if implementation == "eager":
        dtype = next(model.parameters()).dtype
        return {"attention_mask": torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(~allowed, torch.finfo(dtype).min)}
    raise ValueError(
        f"attn_implementation={implementation!r} takes no custom 4D attention mask, which packed pairs need; "
        "load the model with attn_implementation='sdpa' (the default) or 'eager'"
    )
