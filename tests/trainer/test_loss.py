"""The ORPO loss against hand-computed values and against an independent per-token reference."""

from __future__ import annotations

import math
from collections import Counter

import pytest
import torch

from trainer.data import Pair, TokenizedPair, collate, tokenize_pair
from trainer.loss import (
    IGNORE_INDEX,
    log1mexp,
    log_odds_ratio,
    odds_ratio_loss,
    orpo_loss,
    orpo_sums,
    token_logps,
)


def _log_odds(logp: float) -> float:
    p = math.exp(logp)
    return math.log(p / (1 - p))


def test_log1mexp_matches_float64_on_both_branches() -> None:
    x = torch.tensor([-50.0, -5.0, -1.0, -0.7, -0.69, -0.1, -1e-3, -1e-6])
    expected = torch.log(-torch.expm1(x.double()))
    torch.testing.assert_close(log1mexp(x).double(), expected, rtol=1e-6, atol=1e-12)


def test_log_odds_ratio_and_loss_hand_computed() -> None:
    c, r = torch.tensor([-0.5, -2.0]), torch.tensor([-2.0, -0.5])
    expected = [_log_odds(-0.5) - _log_odds(-2.0), _log_odds(-2.0) - _log_odds(-0.5)]
    torch.testing.assert_close(log_odds_ratio(c, r), torch.tensor(expected), rtol=1e-6, atol=1e-6)
    # -log sigmoid(z) = log(1 + e^-z)
    loss = [math.log1p(math.exp(-z)) for z in expected]
    torch.testing.assert_close(odds_ratio_loss(c, r), torch.tensor(loss), rtol=1e-6, atol=1e-6)
    assert expected[0] > 0 > expected[1]  # preferring the likelier response gives positive log odds


def _or_loss_and_grads(c: float, r: float, dtype: torch.dtype) -> tuple[float, float, float]:
    ct = torch.tensor([c], dtype=dtype, requires_grad=True)
    rt = torch.tensor([r], dtype=dtype, requires_grad=True)
    if dtype == torch.float64:  # the exact formula, no clamp: the reference for finite inputs
        z = (ct - rt) - (torch.log(-torch.expm1(ct)) - torch.log(-torch.expm1(rt)))
        loss = -torch.nn.functional.logsigmoid(z).sum()
    else:
        loss = odds_ratio_loss(ct, rt).sum()
    loss.backward()
    return loss.item(), ct.grad.item(), rt.grad.item()


@pytest.mark.parametrize(("c", "r"), [(-1e-7, -2.0), (-2.0, -1e-7), (-1e-7, -3e-7), (-3e-7, -1e-7), (-5e-7, -1e-6)])
def test_near_certain_logps_keep_their_exact_loss_and_gradients(c: float, r: float) -> None:
    # A memorised response (mean log-prob above -1e-6) still has an OR gradient, and when both are
    # near 0 the likelier rejected one still loses (a clamp at -1e-6 made these ln 2 with zero gradients).
    ours, expected = _or_loss_and_grads(c, r, torch.float32), _or_loss_and_grads(c, r, torch.float64)
    assert ours == pytest.approx(expected, rel=1e-4)
    assert ours[1] < 0 < ours[2]  # raise the chosen, lower the rejected


@pytest.mark.parametrize("side", ["chosen", "rejected"])
def test_a_logp_of_exactly_zero_gives_finite_loss_and_the_partner_its_gradient(side: str) -> None:
    c, r = (0.0, -1e-7) if side == "chosen" else (-1e-7, 0.0)
    loss, grad_c, grad_r = _or_loss_and_grads(c, r, torch.float32)
    # 0 moves to the smallest normal float32 below 0: the loss and the partner's gradient are the exact
    # ones there; the side at 0 (whose true gradient is infinite) gets none.
    tiny = torch.finfo(torch.float32).tiny
    at = (-tiny, r) if side == "chosen" else (c, -tiny)
    expected_loss, expected_c, expected_r = _or_loss_and_grads(*at, torch.float64)
    assert math.isfinite(loss) and loss == pytest.approx(expected_loss, rel=1e-4)
    if side == "chosen":
        assert grad_c == 0.0 and grad_r == pytest.approx(expected_r, rel=1e-4) and grad_r > 0
    else:
        assert grad_r == 0.0 and grad_c == pytest.approx(expected_c, rel=1e-4) and grad_c < 0
        assert loss > 50  # a memorised rejected response is the worst case, not "no preference" (ln 2)


def test_very_negative_logps_reduce_to_the_logp_difference() -> None:
    c, r = torch.tensor([-900.0]), torch.tensor([-1000.0])
    # log(1 - e^x) -> 0, so the log odds ratio is just c - r
    assert log_odds_ratio(c, r).item() == pytest.approx(100.0)
    assert odds_ratio_loss(c, r).item() == pytest.approx(0.0, abs=1e-30)
    assert math.isfinite(odds_ratio_loss(r, c).item())


def test_token_logps_shifts_and_masks() -> None:
    logits = torch.tensor([[[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 3.0]]])
    labels = torch.tensor([[IGNORE_INDEX, 1, 2]])  # position t is predicted by logits at t-1
    logps, mask = token_logps(logits, labels)
    # token 1 under logits [2, 0, 0]; token 2 under logits [0, 1, 0]; the last logits predict nothing
    expected = [math.log(1 / (math.exp(2) + 2)), math.log(1 / (2 + math.e))]
    assert mask.tolist() == [[True, True]]
    torch.testing.assert_close(logps, torch.tensor([expected]))
    logps, mask = token_logps(logits, torch.tensor([[IGNORE_INDEX, IGNORE_INDEX, 2]]))
    assert mask.tolist() == [[False, True]] and logps[0, 0].item() == 0.0


def test_orpo_loss_hand_computed_batch() -> None:
    # one pair, vocab 2, each response one token: chosen predicted with p=0.8, rejected with p=0.3
    lc, lr = math.log(0.8), math.log(0.3)
    logits = torch.tensor([[[math.log(0.2), math.log(0.8)], [0.0, 0.0]], [[math.log(0.7), math.log(0.3)], [0.0, 0.0]]])
    input_ids = torch.tensor([[0, 1], [0, 1]])
    labels = torch.tensor([[IGNORE_INDEX, 1], [IGNORE_INDEX, 1]])
    out = orpo_loss(logits, input_ids, torch.ones_like(input_ids), labels, beta=0.5)
    ratio = _log_odds(lc) - _log_odds(lr)
    or_loss = math.log1p(math.exp(-ratio))
    assert out.nll_loss.item() == pytest.approx(-lc, rel=1e-5)
    assert out.or_loss.item() == pytest.approx(or_loss, rel=1e-5)
    assert out.loss.item() == pytest.approx(-lc + 0.5 * or_loss, rel=1e-5)
    assert out.log_odds_ratio.item() == pytest.approx(ratio, rel=1e-5)
    assert out.accuracy.item() == 1.0
    assert out.margin.item() == pytest.approx(lc - lr, rel=1e-5)
    assert out.ppl_chosen.item() == pytest.approx(1 / 0.8, rel=1e-5)


def reference_orpo(model, pairs: list[TokenizedPair], *, beta: float, prompt_loss: bool) -> dict[str, float]:
    """Straightforward float64 reference: one unpadded forward per sequence, a Python loop over tokens."""
    seq_logps = {"chosen": [], "rejected": []}
    nll_sum, nll_tokens = 0.0, 0
    for pair in pairs:
        for kind in ("chosen", "rejected"):
            response = getattr(pair, f"{kind}_ids")
            ids = pair.prompt_ids + response
            logprobs = torch.log_softmax(model(torch.tensor([ids])).logits[0].double(), dim=-1)
            token_lps = [logprobs[t - 1, ids[t]].item() for t in range(1, len(ids))]
            response_lps = token_lps[len(pair.prompt_ids) - 1:]
            seq_logps[kind].append(sum(response_lps) / len(response_lps))
            if kind == "chosen":
                scored = token_lps if prompt_loss else response_lps
                nll_sum -= sum(scored)
                nll_tokens += len(scored)
    ratios = []
    for c, r in zip(seq_logps["chosen"], seq_logps["rejected"], strict=True):
        ratios.append((c - r) - (math.log1p(-math.exp(c)) - math.log1p(-math.exp(r))))
    or_loss = sum(math.log1p(math.exp(-z)) for z in ratios) / len(ratios)
    return {"loss": nll_sum / nll_tokens + beta * or_loss, "or_loss": or_loss, "log_odds_ratio": sum(ratios) / len(ratios)}


@pytest.mark.parametrize("prompt_loss", [False, True])
def test_orpo_loss_matches_independent_reference(tokenizer, tiny_model, pair_rows, prompt_loss: bool) -> None:
    model = tiny_model().eval()
    pairs = []
    for row in pair_rows[:3]:
        pair = Pair([{"role": "user", "content": row["prompt"]}], [{"role": "assistant", "content": row["chosen"]}],
                    [{"role": "assistant", "content": row["rejected"]}])
        pairs.append(tokenize_pair(tokenizer, pair, max_length=64, max_prompt_length=32, counts=Counter()))
    batch = collate(pairs, tokenizer.pad_token_id)
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        ours = orpo_loss(logits, batch["input_ids"], batch["attention_mask"], batch["labels"], beta=0.1, prompt_loss=prompt_loss)
        ref = reference_orpo(model, pairs, beta=0.1, prompt_loss=prompt_loss)
    assert ours.loss.item() == pytest.approx(ref["loss"], abs=1e-4)
    assert ours.or_loss.item() == pytest.approx(ref["or_loss"], abs=1e-4)
    assert ours.log_odds_ratio.item() == pytest.approx(ref["log_odds_ratio"], abs=1e-4)


def test_sums_over_parts_equal_the_whole_batch() -> None:
    torch.manual_seed(0)
    logits = torch.randn(8, 6, 5)
    labels = torch.randint(0, 5, (8, 6))
    labels[:, :2] = IGNORE_INDEX
    labels[1, 4:] = IGNORE_INDEX  # ragged response lengths make per-part means differ from the whole
    whole = orpo_sums(logits, labels).reduce(0.1)
    halves = [orpo_sums(torch.cat([logits[i:i + 2], logits[4 + i:6 + i]]), torch.cat([labels[i:i + 2], labels[4 + i:6 + i]]))
              for i in (0, 2)]
    parts = (halves[0] + halves[1]).reduce(0.1)
    for name in ("loss", "nll_loss", "or_loss", "log_odds_ratio", "accuracy", "margin", "ppl_chosen"):
        torch.testing.assert_close(getattr(parts, name), getattr(whole, name))
    total_tokens = halves[0].nll_tokens + halves[1].nll_tokens
    objective = sum(h.objective(0.1, nll_tokens=total_tokens, pairs=4) for h in halves)
    torch.testing.assert_close(objective, whole.loss)
