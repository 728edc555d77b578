"""Lay preference pairs out for one forward pass with a shared prompt and no padding waste.

The plain layout runs chosen and rejected as two padded sequences, so every prompt token is
computed twice and padding is computed too. Here each pair becomes ONE segment

    prompt | chosen response[:-1] | rejected response[:-1]

with position ids 0..P-1, P..P+C-2 and P..P+R-2 (the rejected response continues from the
prompt's end, as if the chosen one were not there), and an attention rule that lets a token see
earlier tokens of its own pair only, and of those only the prompt and its own response. Each
response then sees exactly what it saw as a separate sequence, so every log-prob is the same
(up to float rounding); the prompt is computed once. A response's last token is not fed in at
all: it predicts nothing and, in this layout, nothing attends to it.

Segments are packed back to back into a few rows of about ROW_TOKENS, filled evenly, so the
dense [rows, L, L] attention mask stays small; the short tail of each row is padding that attends
to itself only.

Scoring: a token is predicted by the hidden state one position before it in its sequence. For the
first response token that is the prompt's last position, shared by both responses. `sources`
lists, for every scored token, that position (flattened row * L + column); only those hidden
states are projected onto the vocabulary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch

from trainer.data import TokenizedPair
from trainer.pair_attention import PairSegments, pair_segments

# Tokens per row, about: few enough rows that little is padding, short enough that attention over
# the whole row (eager and flex attention; quadratic in its length) stays a small cost beside the
# rest of the model. The pair-by-pair attention (trainer/pair_attention.py) packs one row instead.
ROW_TOKENS = 512

PROMPT, CHOSEN, REJECTED = 0, 1, 2  # `branch` of each position; padding is a PROMPT of pair -1


@dataclass
class PackedPairs:
    """One micro-batch of n pairs, packed. Tensors only, so `to(device)` moves all of it."""

    input_ids: torch.Tensor  # [rows, L]
    position_ids: torch.Tensor  # [rows, L]
    pair_ids: torch.Tensor  # [rows, L] index of the pair in the batch; -1 on padding
    branch: torch.Tensor  # [rows, L] PROMPT, CHOSEN or REJECTED
    sources: torch.Tensor  # [N] flat position whose hidden state predicts each scored token
    targets: torch.Tensor  # [N] the scored token ids
    scored_pair: torch.Tensor  # [N] pair index of each scored token
    in_chosen: torch.Tensor  # [N] bool: a chosen response token (OR term, perplexity)
    in_rejected: torch.Tensor  # [N] bool: a rejected response token (OR term)
    in_sft: torch.Tensor  # [N] bool: counts in the SFT term (chosen response, + chosen prompt if prompt_loss)
    chosen_tokens: torch.Tensor  # [n] response lengths
    rejected_tokens: torch.Tensor  # [n]

    @property
    def n_pairs(self) -> int:
        return self.chosen_tokens.numel()

    def to(self, device: torch.device | str) -> PackedPairs:
        return PackedPairs(**{f.name: getattr(self, f.name).to(device, non_blocking=True) for f in fields(self)})

    def attention_mask(self) -> torch.Tensor:
        """[rows, 1, L, L] bool, True where query i may attend to key j: same pair, j not after i,
        and j in the prompt or in i's own response."""
        pair_q, pair_k = self.pair_ids[:, :, None], self.pair_ids[:, None, :]
        branch_q, branch_k = self.branch[:, :, None], self.branch[:, None, :]
        length = self.input_ids.size(1)
        idx = torch.arange(length, device=self.input_ids.device)
        causal = idx[None, :, None] >= idx[None, None, :]
        same_context = (branch_k == PROMPT) | (branch_k == branch_q)
        return (causal & (pair_q == pair_k) & same_context)[:, None]

    def pair_segments(self) -> PairSegments:
        """The same rule as one short segment per pair (trainer/pair_attention.py)."""
        return pair_segments(self.pair_ids, self.branch, self.n_pairs, prompt=PROMPT)


def pack_pairs(pairs: list[TokenizedPair], pad_token_id: int, *, prompt_loss: bool,
               row_tokens: int = ROW_TOKENS) -> PackedPairs:
    """Pack pairs for `trainer.forward.PairScorer`. With prompt_loss the chosen prompt's tokens
    (all but its first, which nothing predicts) are in the SFT term too."""
    lengths = [len(p.prompt_ids) + len(p.chosen_ids) + len(p.rejected_ids) - 2 for p in pairs]
    # As few rows as row_tokens allows, filled evenly (longest pair first, onto the shortest row):
    # every row is padded to the longest, so an uneven last row would be mostly padding.
    rows: list[list[int]] = [[] for _ in range(max(1, math.ceil(sum(lengths) / row_tokens)))]
    load = [0] * len(rows)
    for k in sorted(range(len(pairs)), key=lambda k: -lengths[k]):
        row = load.index(min(load))
        rows[row].append(k)
        load[row] += lengths[k]
    rows = [members for members in rows if members]
    width = max(load)

    input_ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
    position_ids = torch.zeros((len(rows), width), dtype=torch.long)
    pair_ids = torch.full((len(rows), width), -1, dtype=torch.long)
    branch = torch.full((len(rows), width), PROMPT, dtype=torch.long)
    sources: list[int] = []
    targets: list[int] = []
    scored_pair: list[int] = []
    kinds: list[int] = []  # PROMPT, CHOSEN or REJECTED per scored token
    for r, members in enumerate(rows):
        offset = 0
        for k in members:
            pair = pairs[k]
            p, c, j = len(pair.prompt_ids), len(pair.chosen_ids) - 1, len(pair.rejected_ids) - 1  # fed-in lengths
            start = r * width + offset
            end = offset + p + c + j
            input_ids[r, offset:end] = torch.tensor(pair.prompt_ids + pair.chosen_ids[:-1] + pair.rejected_ids[:-1])
            position_ids[r, offset:end] = torch.cat([torch.arange(p + c), torch.arange(p, p + j)])
            pair_ids[r, offset:end] = k
            branch[r, offset + p: offset + p + c] = CHOSEN
            branch[r, offset + p + c: end] = REJECTED
            if prompt_loss:  # prompt token t is predicted by prompt position t-1
                sources += range(start, start + p - 1)
                targets += pair.prompt_ids[1:]
                kinds += [PROMPT] * (p - 1)
            # response token t: by the prompt's last position for t = 0, else by the response's t-1
            last_prompt = start + p - 1
            sources += [last_prompt, *range(start + p, start + p + c)]
            sources += [last_prompt, *range(start + p + c, start + p + c + j)]
            targets += pair.chosen_ids + pair.rejected_ids
            kinds += [CHOSEN] * (c + 1) + [REJECTED] * (j + 1)
            scored_pair += [k] * ((p - 1 if prompt_loss else 0) + c + j + 2)
            offset = end
    kind = torch.tensor(kinds, dtype=torch.long)
    return PackedPairs(
        input_ids=input_ids, position_ids=position_ids, pair_ids=pair_ids, branch=branch,
        sources=torch.tensor(sources, dtype=torch.long), targets=torch.tensor(targets, dtype=torch.long),
        scored_pair=torch.tensor(scored_pair, dtype=torch.long),
        in_chosen=kind == CHOSEN, in_rejected=kind == REJECTED, in_sft=(kind == CHOSEN) | (kind == PROMPT),
        chosen_tokens=torch.tensor([len(p.chosen_ids) for p in pairs], dtype=torch.long),
        rejected_tokens=torch.tensor([len(p.rejected_ids) for p in pairs], dtype=torch.long),
    )
