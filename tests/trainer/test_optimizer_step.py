"""The clip coefficient handed to the fused AdamW as its gradient divisor gives the update that
clip_grad_norm_ + step gives (trainer/optimizer_step.py)."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from trainer.optimizer_step import clip_and_step


def _params_and_grads(seed: int) -> tuple[list[torch.nn.Parameter], list[list[torch.Tensor]]]:
    generator = torch.Generator().manual_seed(seed)
    shapes = [(64, 32), (32,), (128, 64), (1,)]
    params = [torch.nn.Parameter(torch.randn(s, generator=generator)) for s in shapes]
    # Three steps of gradients of different sizes, so the clip coefficient differs from step to step
    # (with one constant coefficient Adam's update would hardly notice the clipping at all).
    grads = [[torch.randn(s, generator=generator) * scale for s in shapes] for scale in (5.0, 0.01, 40.0)]
    return params, grads


def _train(params: list[torch.nn.Parameter], grads: list[list[torch.Tensor]], *, max_norm: float, folded: bool,
           fused: bool = True) -> tuple[list[float], torch.optim.Optimizer]:
    optimizer = torch.optim.AdamW([{"params": params[:2], "weight_decay": 0.1}, {"params": params[2:], "weight_decay": 0.0}],
                                  lr=1e-2, fused=fused or None)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    norms = []
    for step_grads in grads:
        for p, g in zip(params, step_grads, strict=True):
            p.grad = g.clone()
        if folded:
            norm = clip_and_step(optimizer, scaler, params, max_norm)
        else:
            norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
            optimizer.step()
        norms.append(float(norm))
        optimizer.zero_grad(set_to_none=True)
    return norms, optimizer


@pytest.mark.parametrize("max_norm", [1.0, math.inf])
def test_folded_clip_matches_clip_then_step(max_norm: float) -> None:
    params, grads = _params_and_grads(0)
    plain_params, folded_params = copy.deepcopy(params), copy.deepcopy(params)
    plain_norms, plain = _train(plain_params, grads, max_norm=max_norm, folded=False)
    folded_norms, folded = _train(folded_params, grads, max_norm=max_norm, folded=True)

    assert folded_norms == pytest.approx(plain_norms, rel=1e-6)  # the reported norm is the one before clipping
    for a, b in zip(plain_params, folded_params, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-6, atol=1e-7)
        sa, sb = plain.state[a], folded.state[b]
        torch.testing.assert_close(sb["exp_avg"], sa["exp_avg"], rtol=1e-6, atol=1e-9)
        torch.testing.assert_close(sb["exp_avg_sq"], sa["exp_avg_sq"], rtol=1e-5, atol=1e-12)
    assert not hasattr(folded, "grad_scale")  # nothing left on the optimizer for a later step to pick up


def test_the_clipping_is_applied_not_skipped() -> None:
    """The comparison above would also pass if neither side clipped: here clipping changes the state."""
    params, grads = _params_and_grads(1)
    clipped, unclipped = copy.deepcopy(params), copy.deepcopy(params)
    norms, with_clip = _train(clipped, grads, max_norm=1.0, folded=True)
    _, without_clip = _train(unclipped, grads, max_norm=math.inf, folded=True)
    assert max(norms) > 1.0
    first_moment = with_clip.state[clipped[0]]["exp_avg"]
    assert first_moment.norm() < 0.5 * without_clip.state[unclipped[0]]["exp_avg"].norm()


def test_an_optimizer_that_is_not_fused_takes_the_standard_path() -> None:
    params, grads = _params_and_grads(2)
    plain_params, folded_params = copy.deepcopy(params), copy.deepcopy(params)
    _, plain = _train(plain_params, grads, max_norm=1.0, folded=False, fused=False)
    _, folded = _train(folded_params, grads, max_norm=1.0, folded=True, fused=False)
    for a, b in zip(plain_params, folded_params, strict=True):
        torch.testing.assert_close(b, a, rtol=0, atol=0)  # the very same operations
