"""Attention over packed pairs, computed pair by pair instead of over the whole packed row.

The packed layout (trainer/packing.py) puts several pairs in one row and keeps them apart with a
[rows, L, L] mask. SDPA computes every query against every key of the row and only then masks, so
with n pairs in a row all but about 1/n of that work is thrown away: for SmolLM2 at batch 4 the
attention forward and backward were a tenth of the step. Here the queries, keys and values are
gathered into one short segment per pair ([pairs, heads, S, dim], S the longest pair), SDPA runs once
over all segments with the pair's own rule (prompt plus own response, causal), and the outputs are
put back at their packed positions. The matmuls of the model are untouched (they never see the
segments), so the padding added here costs attention work only.

Registered with transformers as an attention implementation: `use_pair_attention(model)` switches a
model that uses SDPA to it. Calls that carry no `pair_segments` (generation, a plain forward) are
passed to transformers' own SDPA function unchanged, so only the packed training and evaluation
forward takes this path (trainer/forward.py). Same outputs and gradients as the masked row up to
float rounding: tests/trainer/test_pair_attention.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

NAME = "orpo_pair_segments"
# Devices whose SDPA kernels take grouped key/value heads together with a mask. On CUDA a mask with
# enable_gqa falls back to the math kernel, so there the shared heads are repeated (small: the
# segments are short) to keep the memory-efficient kernel.
GROUPED_HEADS_WITH_MASK = frozenset({"cpu"})


@dataclass
class PairSegments:
    """Where each pair's tokens sit in the packed rows, and its attention rule as a segment."""

    gather: torch.Tensor  # [n, S] flat packed position (row * L + column) of each slot; padding slots repeat slot 0
    mask: torch.Tensor  # [n, 1, S, S] bool, True where a slot may attend; a padding slot attends to itself only
    scatter: torch.Tensor  # [rows * L] flat slot (pair * S + slot) holding each packed position; row padding -> 0
    # Attention calls that used these segments: PairScorer checks the model passed them to its layers.
    calls: int = field(default=0, compare=False)

    def to(self, device: torch.device | str) -> PairSegments:
        return PairSegments(gather=self.gather.to(device, non_blocking=True), mask=self.mask.to(device, non_blocking=True),
                            scatter=self.scatter.to(device, non_blocking=True))


def pair_segments(pair_ids: torch.Tensor, branch: torch.Tensor, n_pairs: int, *, prompt: int) -> PairSegments:
    """Segments for packed rows with these pair ids (-1 on padding) and branches (`prompt` marks the
    tokens every branch may see). The rule is `PackedPairs.attention_mask`, restricted to each pair."""
    flat_pair, device = pair_ids.reshape(-1), pair_ids.device
    positions = (flat_pair >= 0).nonzero().squeeze(1)  # in packed order, which is each pair's token order
    order = torch.argsort(flat_pair[positions], stable=True)
    positions, owner = positions[order], flat_pair[positions][order]
    counts = torch.bincount(owner, minlength=n_pairs)
    starts = torch.cumsum(counts, 0) - counts
    slot = torch.arange(positions.numel(), device=device) - starts[owner]
    width = int(counts.max())

    gather = positions[starts].unsqueeze(1).repeat(1, width)
    gather[owner, slot] = positions
    valid = torch.arange(width, device=device)[None, :] < counts[:, None]  # [n, S]
    scatter = torch.zeros(flat_pair.numel(), dtype=torch.long, device=device)
    scatter[positions] = owner * width + slot

    seg_branch = branch.reshape(-1)[gather]
    branch_q, branch_k = seg_branch[:, :, None], seg_branch[:, None, :]
    causal = torch.ones(width, width, dtype=torch.bool, device=device).tril()
    mask = causal & ((branch_k == prompt) | (branch_k == branch_q)) & valid[:, :, None] & valid[:, None, :]
    mask |= torch.eye(width, dtype=torch.bool, device=device) & ~valid[:, :, None]
    return PairSegments(gather=gather, mask=mask[:, None], scatter=scatter)


def pair_segment_attention(module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                           attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                           pair_segments: PairSegments | None = None, **kwargs: Any) -> tuple[torch.Tensor, None]:
    """transformers' attention-function signature: query [rows, heads, L, dim], key and value
    [rows, kv_heads, L, dim]; returns [rows, L, heads, dim]."""
    if pair_segments is None:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs)
    pair_segments.calls += 1
    rows, heads, length, dim = query.shape
    n, width = pair_segments.gather.shape
    index = pair_segments.gather.reshape(-1)

    def segments(states: torch.Tensor) -> torch.Tensor:  # [rows, h, L, d] -> [n, h, S, d]
        flat = states.transpose(1, 2).reshape(rows * length, states.size(1), dim)
        return flat.index_select(0, index).view(n, width, states.size(1), dim).transpose(1, 2)

    keys, values = segments(key), segments(value)
    groups = heads // key.size(1)
    if groups > 1 and query.device.type not in GROUPED_HEADS_WITH_MASK:
        # Each key/value head serves `groups` query heads (head h reads h // groups, as transformers' repeat_kv).
        keys, values = keys.repeat_interleave(groups, dim=1), values.repeat_interleave(groups, dim=1)
    out = F.scaled_dot_product_attention(
        segments(query), keys, values, attn_mask=pair_segments.mask,
        dropout_p=dropout, scale=scaling, enable_gqa=keys.size(1) != heads,
    )
    out = out.transpose(1, 2).reshape(n * width, heads, dim).index_select(0, pair_segments.scatter)
    return out.view(rows, length, heads, dim), None


def use_pair_attention(model: Any) -> bool:
    """Switch a model that runs SDPA to the pair-by-pair attention (whether it did). Other
    implementations (eager, flex) keep their own and take the packed mask."""
    if getattr(model.config, "_attn_implementation", None) != "sdpa":
        return False
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    AttentionInterface.register(NAME, pair_segment_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(NAME, sdpa_mask)  # generation builds its masks as for SDPA
    model.config._attn_implementation = NAME
    return True
