"""The ORPO objective as small pure functions over tensors.

    loss = L_SFT + beta * L_OR                              (Hong, Lee & Thorne 2024, arXiv 2403.07691)
    L_SFT = token-mean NLL of the chosen responses (plus the chosen prompt when prompt_loss)
    L_OR  = mean over pairs of -log sigmoid(log_odds_ratio)
    log_odds_ratio = log odds(y_c|x) - log odds(y_r|x),  odds(y|x) = P / (1 - P),
    log P(y|x) = MEAN log-prob of the response tokens (the paper's length-normalised likelihood).

The path is split so the forward can be optimised without changing a number:

* a forward pass yields `PairLogps`, summed token log-probs per pair: the training forward
  (`trainer/forward.py`, shared prompt, chunked projection) or the plain path here
  (`token_logps` / `orpo_sums` over padded logits + labels), which tests compare it against;
* `pair_sums` reduces `PairLogps` to additive *sums* (`ORPOSums`), which can be added across
  micro-batches and all-reduced across ranks;
* `log_odds_ratio` / `odds_ratio_loss` take per-sequence mean log-probs only.

`ORPOSums.reduce` turns sums into means. Normalising by totals over the *whole* effective batch
(rather than averaging per-micro-batch means) is what makes gradient accumulation and data
parallelism give exactly the big-batch gradient.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100

# A mean log-prob of exactly 0 means P(y|x) = 1: the odds P/(1-P) are infinite and
# log(1 - P) = -inf. In float32 that happens once a response is memorised (every token's
# log-prob rounds to 0). Only that value is moved, to the smallest normal float32 below 0:
# `log1mexp` is exact for every negative float down to it (log(-expm1(x)), about -87.3 there),
# so a mean log-prob of -1e-7 keeps its true loss and gradient. The side that sat exactly at 0
# gets no OR gradient (its true gradient is infinite); its partner's gradient stays finite.
LOGP_MAX = -torch.finfo(torch.float32).tiny


def log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(x)) for x < 0, stable at both ends (Maechler 2012).

    For x < -ln 2, exp(x) is small and log1p(-exp(x)) is accurate; closer to 0, 1 - exp(x)
    cancels catastrophically and log(-expm1(x)) is accurate instead.
    """
    x = x.float()
    small = x < -math.log(2.0)
    # Evaluate each branch on values safe for it so the unused branch never produces NaN/inf
    # gradients that `where` would still propagate.
    safe_small = torch.where(small, x, torch.full_like(x, -1.0))
    safe_large = torch.where(small, torch.full_like(x, -0.5), x)
    return torch.where(small, torch.log1p(-torch.exp(safe_small)), torch.log(-torch.expm1(safe_large)))


def log_odds_ratio(logps_chosen: torch.Tensor, logps_rejected: torch.Tensor) -> torch.Tensor:
    """Per-pair log odds ratio from per-sequence MEAN log-probs, computed in float32."""
    c = logps_chosen.float().clamp(max=LOGP_MAX)
    r = logps_rejected.float().clamp(max=LOGP_MAX)
    return (c - r) - (log1mexp(c) - log1mexp(r))


def odds_ratio_loss(logps_chosen: torch.Tensor, logps_rejected: torch.Tensor) -> torch.Tensor:
    """Per-pair L_OR = -log sigmoid(log odds ratio); average it yourself (see ORPOSums)."""
    return -F.logsigmoid(log_odds_ratio(logps_chosen, logps_rejected))


def at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """16-bit logits are upcast for the log-softmax; float64 stays float64 (exact comparisons in tests)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def token_logps(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-prob of each label token under the logits that predict it.

    `labels` are aligned with the input ids (HF convention): position t's label is predicted by
    the logits at t-1, so both are shifted here. Returns (logps, mask), each [batch, seq-1];
    masked positions (label == IGNORE_INDEX) have logp 0 and mask False.
    """
    logits = at_least_float32(logits[:, :-1, :])
    labels = labels[:, 1:]
    mask = labels != IGNORE_INDEX
    # cross_entropy is log_softmax + gather in one kernel, without a [B, T, V] log-prob copy.
    nll = F.cross_entropy(
        logits.reshape(-1, logits.size(-1)),
        labels.masked_fill(~mask, 0).reshape(-1),
        reduction="none",
    ).view(labels.shape)
    return -nll * mask, mask


@dataclass
class ORPOSums:
    """Additive sums over pairs and tokens: add them across micro-batches or all-reduce them
    across ranks, then `reduce` once. Every field is a 0-d float32 tensor."""

    nll: torch.Tensor  # sum of NLL over the SFT tokens (chosen responses, + chosen prompts if prompt_loss)
    nll_tokens: torch.Tensor
    chosen_nll: torch.Tensor  # sum of NLL over chosen *response* tokens only (for perplexity)
    chosen_tokens: torch.Tensor
    or_loss: torch.Tensor  # sum over pairs of -log sigmoid(log odds ratio)
    log_odds_ratio: torch.Tensor
    correct: torch.Tensor  # pairs with logp_chosen > logp_rejected
    logps_chosen: torch.Tensor
    logps_rejected: torch.Tensor
    pairs: torch.Tensor

    def __add__(self, other: ORPOSums) -> ORPOSums:
        return ORPOSums(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})

    def detach(self) -> ORPOSums:
        return ORPOSums(**{f.name: getattr(self, f.name).detach() for f in fields(self)})

    def as_tensor(self) -> torch.Tensor:
        """All sums stacked into one vector, for a single all-reduce."""
        return torch.stack([getattr(self, f.name).float() for f in fields(self)])

    @classmethod
    def zeros(cls, device: torch.device | str = "cpu") -> ORPOSums:
        return cls.from_tensor(torch.zeros(len(fields(cls)), device=device))

    @classmethod
    def from_tensor(cls, vector: torch.Tensor) -> ORPOSums:
        return cls(**{f.name: vector[i] for i, f in enumerate(fields(cls))})

    def objective(self, beta: float, *, nll_tokens: torch.Tensor | float, pairs: torch.Tensor | float) -> torch.Tensor:
        """This part's contribution to the loss of a batch with `nll_tokens` SFT tokens and `pairs`
        pairs in total. Summing the contributions of all parts gives the whole batch's loss."""
        return self.nll / nll_tokens + beta * self.or_loss / pairs

    def reduce(self, beta: float) -> ORPOLoss:
        """Means over everything summed so far."""
        nll_loss = self.nll / self.nll_tokens.clamp(min=1)
        or_loss = self.or_loss / self.pairs.clamp(min=1)
        return ORPOLoss(
            loss=nll_loss + beta * or_loss,
            nll_loss=nll_loss,
            or_loss=or_loss,
            log_odds_ratio=self.log_odds_ratio / self.pairs.clamp(min=1),
            accuracy=self.correct / self.pairs.clamp(min=1),
            logps_chosen=self.logps_chosen / self.pairs.clamp(min=1),
            logps_rejected=self.logps_rejected / self.pairs.clamp(min=1),
            margin=(self.logps_chosen - self.logps_rejected) / self.pairs.clamp(min=1),
            ppl_chosen=torch.exp(self.chosen_nll / self.chosen_tokens.clamp(min=1)),
        )


@dataclass
class ORPOLoss:
    """Means over a batch; `loss` carries the graph when the inputs did."""

    loss: torch.Tensor
    nll_loss: torch.Tensor
    or_loss: torch.Tensor
    log_odds_ratio: torch.Tensor
    accuracy: torch.Tensor
    logps_chosen: torch.Tensor
    logps_rejected: torch.Tensor
    margin: torch.Tensor
    ppl_chosen: torch.Tensor

    def metrics(self, prefix: str = "") -> dict[str, float]:
        """Plain floats keyed by metric name (orpo_dash.metric_names). Forces a device sync."""
        return {prefix + f.name: float(getattr(self, f.name).detach()) for f in fields(self)}


def nll_labels(input_ids: torch.Tensor, attention_mask: torch.Tensor, *, prompt_loss: bool) -> torch.Tensor | None:
    """Labels of the chosen rows for the SFT term: None (= the response labels), or every real
    token, prompt included, when prompt_loss."""
    if not prompt_loss:
        return None
    return input_ids.masked_fill(attention_mask == 0, IGNORE_INDEX)


@dataclass
class PairLogps:
    """Summed token log-probs per pair: all the ORPO objective needs from a forward pass. The
    plain path (`orpo_sums` over padded logits) and the packed one (`trainer.forward`) both
    produce it, so they share every line of the objective."""

    chosen: torch.Tensor  # [n] sum of log-probs over each chosen response
    chosen_tokens: torch.Tensor  # [n] response lengths
    rejected: torch.Tensor  # [n]
    rejected_tokens: torch.Tensor  # [n]
    sft: torch.Tensor  # 0-d sum of log-probs over the SFT tokens (chosen responses, + chosen prompts if prompt_loss)
    sft_tokens: torch.Tensor  # 0-d


def pair_sums(logps: PairLogps) -> ORPOSums:
    """Reduce per-pair log-prob sums to additive ORPO sums."""
    chosen = logps.chosen / logps.chosen_tokens.clamp(min=1)  # MEAN over response tokens
    rejected = logps.rejected / logps.rejected_tokens.clamp(min=1)
    ratio = log_odds_ratio(chosen, rejected)
    return ORPOSums(
        nll=-logps.sft,
        nll_tokens=logps.sft_tokens.float(),
        chosen_nll=-logps.chosen.detach().sum(),
        chosen_tokens=logps.chosen_tokens.sum().float(),
        or_loss=-F.logsigmoid(ratio).sum(),
        log_odds_ratio=ratio.detach().sum(),
        correct=(chosen > rejected).float().sum().detach(),
        logps_chosen=chosen.detach().sum(),
        logps_rejected=rejected.detach().sum(),
        pairs=torch.tensor(float(chosen.numel()), device=chosen.device),
    )


def orpo_sums(logits: torch.Tensor, labels: torch.Tensor, sft_labels: torch.Tensor | None = None) -> ORPOSums:
    """Reduce one padded chosen+rejected forward pass to additive ORPO sums (the plain path).

    logits: [2n, T, V] for n chosen rows followed by n rejected rows (one forward serves both).
    labels: [2n, T] response-token labels (IGNORE_INDEX on prompt and padding).
    sft_labels: [n, T] labels of the chosen rows for the SFT term when they differ from the
        response labels (prompt_loss, see `nll_labels`); None means the chosen response labels.
    """
    n = logits.size(0) // 2
    logps, mask = token_logps(logits, labels)
    per_pair, tokens = logps.sum(-1), mask.sum(-1)
    if sft_labels is None:
        sft, sft_tokens = per_pair[:n].sum(), tokens[:n].sum()
    else:
        sft_logps, sft_mask = token_logps(logits[:n], sft_labels)
        sft, sft_tokens = sft_logps.sum(), sft_mask.sum()
    return pair_sums(PairLogps(chosen=per_pair[:n], chosen_tokens=tokens[:n], rejected=per_pair[n:],
                               rejected_tokens=tokens[n:], sft=sft, sft_tokens=sft_tokens))


def orpo_loss(
    logits: torch.Tensor,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    labels: torch.Tensor,
    *,
    beta: float,
    prompt_loss: bool = False,
) -> ORPOLoss:
    """The ORPO loss and its metrics for one batch (chosen rows first, then rejected)."""
    n = logits.size(0) // 2
    sft = nll_labels(input_ids[:n], attention_mask[:n], prompt_loss=prompt_loss)
    return orpo_sums(logits, labels, sft).reduce(beta)
