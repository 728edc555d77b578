"""The leaner-backward layers (trainer/fused_layers.py) against the model's own modules: the same
forward bit for bit, the same gradients up to rounding, and less memory kept for the backward."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch

from tests.trainer.test_forward import _objective_and_grads, _pairs
from trainer.forward import PairScorer
from trainer.fused_layers import (
    RMSNormFunction,
    SwiGLU,
    SwiGLUDown,
    fuse_layers,
    sparse_tied_embedding_grad,
    tied_embedding_grad_in_place,
)
from trainer.loss import pair_sums
from trainer.packing import pack_pairs


def _double(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, dtype=torch.float64, requires_grad=True)


def test_swiglu_down_gradients_are_the_plain_ones() -> None:
    torch.manual_seed(0)
    gate, up, weight, bias = _double(3, 5, 8), _double(3, 5, 8), _double(4, 8), _double(4)
    assert torch.autograd.gradcheck(SwiGLUDown.apply, (gate, up, weight, bias))
    assert torch.autograd.gradcheck(SwiGLUDown.apply, (gate, up, weight, None))
    assert torch.autograd.gradcheck(SwiGLU.apply, (gate, up))


def test_rmsnorm_gradients_are_the_plain_ones() -> None:
    torch.manual_seed(0)
    x, weight = _double(3, 5, 8), _double(8)
    # computed in float32 like the model's own norm: compare with the same formula under autograd
    got = RMSNormFunction.apply(x, weight, 1e-6)
    xf = x.to(torch.float32)
    expected = weight * (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + 1e-6)).to(x.dtype)
    assert torch.equal(got, expected)
    grad = torch.randn_like(got)
    got_grads = torch.autograd.grad(got, (x, weight), grad)
    expected_grads = torch.autograd.grad(expected, (x, weight), grad)
    for a, b in zip(got_grads, expected_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
    # and in float64 throughout, against the exact derivative
    assert torch.autograd.gradcheck(lambda x, w: RMSNormFunction.apply(x.float(), w.float(), 1e-6).double(),
                                    (x, weight), eps=1e-3, atol=1e-3)


@pytest.mark.parametrize("prompt_loss", [False, True])
def test_fused_model_gives_the_same_loss_and_gradients(tokenizer, tiny_model, pair_rows, prompt_loss: bool) -> None:
    model = tiny_model()
    fused = copy.deepcopy(model)
    assert fuse_layers(fused) == {"rmsnorm": 5, "mlp": 2}  # 2 layers x 2 norms + the final norm
    pairs = _pairs(tokenizer, pair_rows, count=8)
    packed = pack_pairs(pairs, tokenizer.pad_token_id, prompt_loss=prompt_loss)

    plain, plain_grads = _objective_and_grads(model, lambda: pair_sums(PairScorer(model)(packed)))
    fast, fast_grads = _objective_and_grads(fused, lambda: pair_sums(PairScorer(fused)(packed)))

    assert torch.equal(fast.as_tensor(), plain.as_tensor())  # the forward is the same arithmetic
    for (name, _), got, expected in zip(model.named_parameters(), fast_grads, plain_grads, strict=True):
        scale = expected.abs().max().item()
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6 * scale, msg=name)
    assert fused.state_dict().keys() == model.state_dict().keys()


def test_fused_layers_keep_less_for_the_backward(tiny_model) -> None:
    """What autograd holds after the forward: the saved tensors of the graph, summed."""
    model = tiny_model()
    fused = copy.deepcopy(model)
    fuse_layers(fused)
    ids = torch.randint(0, model.config.vocab_size, (2, 48))

    def saved_bytes(m: torch.nn.Module) -> int:
        seen: dict[int, int] = {}

        def pack(t: torch.Tensor) -> torch.Tensor:
            if not isinstance(t, torch.nn.Parameter):
                seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            m.model(input_ids=ids, use_cache=False).last_hidden_state.sum().backward()
        return sum(seen.values())

    assert saved_bytes(fused) < 0.8 * saved_bytes(model)


def test_modules_it_does_not_know_are_left_alone(tiny_model) -> None:
    model = tiny_model()
    for layer in model.model.layers:
        layer.mlp.act_fn = torch.nn.GELU()  # not SwiGLU any more
    assert fuse_layers(model)["mlp"] == 0


def test_fused_model_under_bfloat16_autocast(tokenizer, tiny_model, pair_rows) -> None:
    """Mixed precision (the GPU path, here on the CPU's autocast): float32 weights, 16-bit compute."""
    model = tiny_model()
    fused = copy.deepcopy(model)
    fuse_layers(fused)
    packed = pack_pairs(_pairs(tokenizer, pair_rows, count=8), tokenizer.pad_token_id, prompt_loss=False)

    def sums(m: torch.nn.Module):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return pair_sums(PairScorer(m)(packed))

    plain, plain_grads = _objective_and_grads(model, lambda: sums(model))
    fast, fast_grads = _objective_and_grads(fused, lambda: sums(fused))
    assert torch.equal(fast.as_tensor(), plain.as_tensor())
    for got, expected in zip(fast_grads, plain_grads, strict=True):
        assert got.dtype == torch.float32
        torch.testing.assert_close(got, expected, rtol=2e-2, atol=2e-2 * expected.abs().max().item())


def _two_micro_batches(model: torch.nn.Module, packed: Any) -> list[torch.Tensor]:
    """The gradients after two backward passes, the second accumulating into the first's."""
    model.zero_grad(set_to_none=True)
    for _ in range(2):
        sums = pair_sums(PairScorer(model)(packed))
        sums.objective(0.5, nll_tokens=sums.nll_tokens.detach(), pairs=sums.pairs).backward()
    return [p.grad for p in model.parameters()]


def test_a_sparse_input_embedding_gradient_sums_into_the_tied_dense_one(tokenizer, pair_rows) -> None:
    from tests.trainer.conftest import build_model

    model = build_model(len(tokenizer))
    model.config.tie_word_embeddings = True
    model.tie_weights()
    sparse = copy.deepcopy(model)
    assert sparse_tied_embedding_grad(sparse)
    assert not sparse_tied_embedding_grad(build_model(len(tokenizer)))  # untied: dense, as the optimizer needs
    ids = torch.tensor([[1, 2, 3]])
    assert sparse.get_input_embeddings()(ids).grad_fn._saved_sparse  # the [vocab, hidden] temporary is sparse
    assert not model.get_input_embeddings()(ids).grad_fn._saved_sparse
    packed = pack_pairs(_pairs(tokenizer, pair_rows, count=8), tokenizer.pad_token_id, prompt_loss=True)

    for got, expected in zip(_two_micro_batches(sparse, packed), _two_micro_batches(model, packed), strict=True):
        assert got.layout == torch.strided
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6 * expected.abs().max().item())


def test_the_tied_embedding_gradient_added_in_place_is_the_plain_one(tokenizer, pair_rows) -> None:
    from tests.trainer.conftest import build_model

    model = build_model(len(tokenizer))
    model.config.tie_word_embeddings = True
    model.tie_weights()
    model.get_input_embeddings().padding_idx = tokenizer.pad_token_id  # as Llama's embed_tokens has it
    in_place = copy.deepcopy(model)
    assert tied_embedding_grad_in_place(in_place)
    assert not tied_embedding_grad_in_place(build_model(len(tokenizer)))  # untied: left alone
    ids = torch.tensor([[1, 2, 3]])
    assert type(in_place.get_input_embeddings()(ids).grad_fn).__name__ == "EmbeddingRowsToGradBackward"
    packed = pack_pairs(_pairs(tokenizer, pair_rows, count=8), tokenizer.pad_token_id, prompt_loss=True, row_tokens=60)

    for got, expected in zip(_two_micro_batches(in_place, packed), _two_micro_batches(model, packed), strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6 * expected.abs().max().item())
