"""Leaner backward for the two layers that hold most of a small decoder's activations.

Autograd keeps every intermediate an op needs for its gradient. In a Llama-style layer that is,
per token, four [intermediate]-wide tensors in the MLP (gate, up, silu(gate), and their product,
which down_proj keeps as its input) and two copies of the hidden state in each RMSNorm (its input
and the normalised value before the weight). Here:

* `SwiGLUDown` keeps only gate and up (and down_proj's weight); silu(gate) * up is recomputed in
  the backward pass, an elementwise op that costs little beside the three matmuls around it;
* `RMSNormFunction` keeps its input and one inverse root per token, and recomputes the normalised
  value.

Same arithmetic in the forward pass (bit for bit), the same gradients up to float rounding
(tests/trainer/test_fused_layers.py): about a third less activation memory for SmolLM2
(benchmarks/trainer_vs_reference.py). Only modules known to compute exactly this are changed
(`fuse_layers`); anything else, a LoRA-wrapped down_proj included, keeps its own forward.

With tied input and output embeddings the input side's gradient is a dense [vocab, hidden] tensor
(113 MB for SmolLM2) of which only the rows of the batch's tokens are non-zero, made at the end of the
backward pass and then added to the output side's. `tied_embedding_grad_in_place` adds those rows
straight into the weight's gradient instead (one process); `sparse_tied_embedding_grad` hands autograd
a sparse tensor (under DDP). The sparse one still costs a copy: autograd sums it with the dense one out
of place, a new 113 MB tensor and a copy each step (130-165 ms a step on 2 CPU cores, measured).
"""

from __future__ import annotations

import types
from typing import Any

import torch
import torch.nn.functional as F

# Classes whose forward is exactly `self.weight * (x.float() * rsqrt(mean(x.float()**2) + eps)).to(x.dtype)`
# (Gemma's norm multiplies by 1 + weight and is not among them).
RMSNORM_CLASSES = frozenset({"LlamaRMSNorm", "MistralRMSNorm", "Qwen2RMSNorm", "Qwen3RMSNorm"})
# Classes whose forward is exactly `down_proj(act_fn(gate_proj(x)) * up_proj(x))`.
MLP_CLASSES = frozenset({"LlamaMLP", "MistralMLP", "Qwen2MLP", "Qwen3MLP"})


class SwiGLUDown(torch.autograd.Function):
    """down_proj(silu(gate) * up), keeping gate and up instead of silu(gate) and the product."""

    @staticmethod
    def forward(ctx: Any, gate: torch.Tensor, up: torch.Tensor, weight: torch.Tensor,
                bias: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(gate, up, weight)
        ctx.has_bias = bias is not None
        return F.linear(F.silu(gate) * up, weight, bias)

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        gate, up, weight = ctx.saved_tensors
        need_gate, need_up, need_weight, need_bias = ctx.needs_input_grad
        # Under autocast the forward ran in the 16-bit dtype of gate/up with a float32 weight cast to it;
        # the backward runs outside autocast, so the same casts are made here by hand.
        compute = grad_out.dtype
        # Five elementwise passes over the [tokens, intermediate] tensors, each a fused kernel (silu and
        # silu_backward), and temporaries reused in place: these passes, not the matmuls, are what a
        # small model's MLP backward spends its memory bandwidth on.
        act = F.silu(gate)
        grad_product = grad_out @ weight.to(compute)
        grad_gate = grad_up = grad_weight = grad_bias = None
        flat_grad = grad_out.reshape(-1, grad_out.size(-1))
        if need_weight:
            product = (act * up).reshape(-1, gate.size(-1))
            grad_weight = (flat_grad.t() @ product.to(compute)).to(weight.dtype)
            del product
        if need_bias and ctx.has_bias:
            grad_bias = flat_grad.sum(0).to(weight.dtype)
        if need_up:
            grad_up = (grad_product * act).to(up.dtype)
        del act
        if need_gate:
            # grad_product is not needed after this: scale it by up in place, then through silu's derivative.
            grad_gate = torch.ops.aten.silu_backward(grad_product.mul_(up), gate).to(gate.dtype)
        return grad_gate, grad_up, grad_weight, grad_bias


class SwiGLU(torch.autograd.Function):
    """silu(gate) * up, keeping gate and up only: for an MLP whose down_proj is not a plain Linear
    (LoRA), which then keeps the product itself."""

    @staticmethod
    def forward(ctx: Any, gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(gate, up)
        return F.silu(gate) * up

    @staticmethod
    def backward(ctx: Any, grad_product: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        gate, up = ctx.saved_tensors
        return torch.ops.aten.silu_backward(grad_product * up, gate), grad_product * F.silu(gate)


class RMSNormFunction(torch.autograd.Function):
    """weight * (x * rsqrt(mean(x^2) + eps)), computed in float32, keeping x and the inverse root."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
        xf = x.to(torch.float32)
        inv_root = torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
        ctx.save_for_backward(x, inv_root, weight)
        return weight * (xf * inv_root).to(x.dtype)

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None, None]:
        x, inv_root, weight = ctx.saved_tensors
        normed = x.to(torch.float32) * inv_root
        grad_weight = None
        if ctx.needs_input_grad[1]:
            grad_weight = (grad_out * normed.to(x.dtype)).reshape(-1, weight.numel()).sum(0).to(weight.dtype)
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_normed = (grad_out * weight).to(torch.float32)
            # d/dx of x * r(x), r = mean(x^2)^-1/2: r * (g - normed * mean(g * normed)), the mean as one
            # fused dot product and the rest in place on temporaries of this function (fewer passes).
            mean_dot = torch.linalg.vecdot(grad_normed, normed).unsqueeze(-1).div_(normed.size(-1))
            grad_x = grad_normed.sub_(normed.mul_(mean_dot)).mul_(inv_root).to(x.dtype)
        return grad_x, grad_weight, None


def _rmsnorm_forward(self: Any, hidden_states: torch.Tensor) -> torch.Tensor:
    return RMSNormFunction.apply(hidden_states, self.weight, self.variance_epsilon)


def _mlp_forward(self: Any, x: torch.Tensor) -> torch.Tensor:
    down = self.down_proj
    if type(down) is torch.nn.Linear:
        return SwiGLUDown.apply(self.gate_proj(x), self.up_proj(x), down.weight, down.bias)
    return down(SwiGLU.apply(self.gate_proj(x), self.up_proj(x)))


def fuse_layers(model: torch.nn.Module) -> dict[str, int]:
    """Give the model's known RMSNorm and SwiGLU MLP modules the leaner backward, in place (the
    parameters and the state dict are untouched). Returns how many of each were changed."""
    counts = {"rmsnorm": 0, "mlp": 0}
    for module in model.modules():
        name = type(module).__name__
        if name in RMSNORM_CLASSES and hasattr(module, "variance_epsilon"):
            module.forward = types.MethodType(_rmsnorm_forward, module)  # type: ignore[method-assign]
            counts["rmsnorm"] += 1
        elif name in MLP_CLASSES and _is_silu(getattr(module, "act_fn", None)):
            module.forward = types.MethodType(_mlp_forward, module)  # type: ignore[method-assign]
            counts["mlp"] += 1
    return counts


class EmbeddingRowsToGrad(torch.autograd.Function):
    """F.embedding whose backward hands autograd nothing for the weight and leaves its gradient rows
    in `pending` instead; a hook on the weight (`tied_embedding_grad_in_place`) adds them into
    `weight.grad` once autograd has put the output projection's dense gradient there."""

    @staticmethod
    def forward(ctx: Any, ids: torch.Tensor, weight: torch.Tensor, padding_idx: int | None,
                pending: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        ctx.save_for_backward(ids)
        ctx.dtype, ctx.padding_idx, ctx.pending = weight.dtype, padding_idx, pending
        return F.embedding(ids, weight, padding_idx)

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[None, None, None, None]:
        (ids,) = ctx.saved_tensors
        rows, flat_ids = grad_out.reshape(-1, grad_out.size(-1)).to(ctx.dtype), ids.reshape(-1)
        if ctx.padding_idx is not None:  # as F.embedding: the padding row gets no gradient
            keep = flat_ids != ctx.padding_idx
            rows, flat_ids = rows[keep], flat_ids[keep]
        ctx.pending.append((flat_ids, rows))
        return None, None, None, None


def _tied_trainable_embedding(model: Any) -> Any:
    """The input embedding when it is a plain nn.Embedding, trained, and tied to the output projection."""
    embedding, output = model.get_input_embeddings(), model.get_output_embeddings()
    tied = output is not None and embedding.weight is getattr(output, "weight", None)
    plain = type(embedding) is torch.nn.Embedding and embedding.max_norm is None and not embedding.scale_grad_by_freq
    return embedding if tied and plain and embedding.weight.requires_grad else None


def tied_embedding_grad_in_place(model: Any) -> bool:
    """With tied, trained embeddings, add the input embedding's gradient rows into the shared weight's
    gradient in place (whether it did). The embedding's backward keeps its rows; the weight's
    post-accumulate hook adds them after autograd has accumulated the output projection's gradient
    (which it does once every use of the weight, the embedding's included, has run its backward).
    One process only: DDP all-reduces a gradient from its own hook on the same event, maybe first."""
    embedding = _tied_trainable_embedding(model)
    if embedding is None:
        return False
    pending: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self: Any, ids: torch.Tensor) -> torch.Tensor:
        return EmbeddingRowsToGrad.apply(ids, self.weight, self.padding_idx, pending)

    def add_pending_rows(weight: torch.Tensor) -> None:
        with torch.no_grad():
            for ids, rows in pending:
                weight.grad.index_add_(0, ids, rows)  # type: ignore[union-attr]
        pending.clear()

    embedding.forward = types.MethodType(forward, embedding)  # type: ignore[method-assign]
    embedding.weight.register_post_accumulate_grad_hook(add_pending_rows)
    return True


def sparse_tied_embedding_grad(model: Any) -> bool:
    """With tied, trained embeddings, let the input embedding hand autograd a sparse gradient (whether it
    did). The weight's gradient stays dense: the output projection's dense gradient reaches the
    shared weight first (the embedding is the first op of the forward, so the last of the backward)
    and the sparse one is summed into it. Untied embeddings keep dense gradients, which the optimizer
    needs."""
    embedding = _tied_trainable_embedding(model)
    if embedding is None:
        return False
    embedding.sparse = True
    return True


def _is_silu(act: Any) -> bool:
    return isinstance(act, torch.nn.SiLU) or type(act).__name__ == "SiLUActivation"
