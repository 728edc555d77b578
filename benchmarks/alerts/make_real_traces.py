"""Real ORPO runs on a tiny randomly initialised Llama, pushed deliberately into each pitfall.

Stand-in for `python -m trainer` until the real trainer lands: the same objective
(loss = NLL + beta * L_OR, TRL's per-token-average log-probs) and the same metric names,
on a synthetic token-level preference task, so the traces are real training dynamics,
not drawn curves.

Task: prompt = 6 random content tokens; chosen = the prompt mapped through a fixed random
permutation (15% of tokens random), then EOS; rejected = chosen with 3 positions replaced by random tokens.

Writes benchmarks/alerts/traces/real_<name>.jsonl (one flat object per step, like the
trainer's --metrics-out). Labels are NOT written here: label_traces.py derives them in
hindsight from what each run actually did.

    python benchmarks/alerts/make_real_traces.py [--only PREFIX] [--steps N]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, LlamaConfig
from transformers.utils import logging as hf_logging

OUT = Path(__file__).parent / "traces"
V = 40  # vocabulary: 0 pad, 1 bos, 2 sep, 3 eos, 4.. content
CONTENT = V - 4
K = 6  # prompt / answer length
EVAL_EVERY = 10
EVAL_PAIRS = 128
TOKEN_NOISE = 0.15  # chance that an answer token is random even in a "correct" response


@dataclass
class Scenario:
    name: str
    seed: int = 0
    hidden: int = 48
    lr: float = 2e-3
    beta: float = 0.2
    batch: int = 8
    steps: int = 400
    warmup: int = 20
    schedule: str = "linear"
    swap_frac: float = 0.0  # fraction of pairs with chosen/rejected swapped
    noisy_chosen: float = 0.0  # fraction of chosen responses replaced by random tokens
    train_pairs: int = 0  # 0: fresh pairs every step (no repetition); >0: a fixed tiny set
    fp16_logits: bool = False  # head computed in float16, as under fp16 mixed precision without care
    notes: str = ""
    extra: dict = field(default_factory=dict)


def scenarios() -> list[Scenario]:
    s: list[Scenario] = []
    # Healthy: a range of seeds, widths, learning rates, betas, batch sizes and schedules.
    grid = [
        (48, 2e-3, 0.2, 8, "linear"), (32, 3e-3, 0.1, 8, "cosine"), (64, 1e-3, 0.1, 16, "linear"),
        (48, 1e-3, 0.5, 4, "constant"), (64, 2e-3, 0.3, 8, "cosine"), (32, 2e-3, 0.2, 4, "linear"),
        (48, 3e-3, 0.1, 16, "constant"), (64, 1.5e-3, 0.2, 8, "linear"), (32, 1e-3, 0.2, 16, "cosine"),
        (48, 2e-3, 1.0, 8, "linear"), (64, 3e-3, 0.5, 4, "cosine"), (48, 1.5e-3, 0.1, 8, "constant"),
    ]
    for i, (h, lr, beta, bs, sched) in enumerate(grid):
        s.append(Scenario(f"healthy_{i:02d}", seed=100 + i, hidden=h, lr=lr, beta=beta, batch=bs, schedule=sched))
    # Pitfalls.
    for i, lr in enumerate([1e-6, 3e-6, 1e-5]):
        s.append(Scenario(f"lr_too_low_{i}", seed=200 + i, lr=lr, notes="lr far too low"))
    for i, lr in enumerate([3e-2, 6e-2, 1e-1]):
        s.append(Scenario(f"lr_too_high_{i}", seed=300 + i, lr=lr, schedule="constant", notes="lr far too high"))
    for i, beta in enumerate([10.0, 30.0, 100.0]):
        s.append(Scenario(f"beta_too_high_{i}", seed=400 + i, beta=beta, notes="beta far too high"))
    for i, frac in enumerate([0.5, 0.5, 1.0]):
        s.append(Scenario(f"swapped_labels_{i}", seed=500 + i, swap_frac=frac, notes=f"{frac:.0%} of pairs swapped"))
    for i, frac in enumerate([1.0, 1.0, 0.8]):
        s.append(Scenario(f"noisy_chosen_{i}", seed=600 + i, noisy_chosen=frac, notes=f"{frac:.0%} chosen are noise"))
    for i, n in enumerate([16, 24, 32]):
        s.append(Scenario(f"tiny_set_epochs_{i}", seed=700 + i, train_pairs=n, lr=3e-3, notes=f"{n} pairs, many epochs"))
    for i, n in enumerate([16, 24]):
        s.append(Scenario(f"fp16_overflow_{i}", seed=800 + i, train_pairs=n, lr=1e-2, fp16_logits=True,
                          schedule="constant",
                          notes="float16 head on a memorisable set"))
    return s


def make_pairs(g: torch.Generator, n: int, perm: torch.Tensor, sc: Scenario):
    prompt = torch.randint(4, V, (n, K), generator=g)
    answer = perm[prompt - 4] + 4
    # Aleatoric noise so the NLL plateaus above zero, like real text does.
    flip = torch.rand(n, K, generator=g) < TOKEN_NOISE
    answer[flip] = torch.randint(4, V, (int(flip.sum()),), generator=g)
    rejected = answer.clone()
    for row in range(n):
        pos = torch.randperm(K, generator=g)[:3]
        rejected[row, pos] = torch.randint(4, V, (3,), generator=g)
    if sc.noisy_chosen:
        noisy = torch.rand(n, generator=g) < sc.noisy_chosen
        answer[noisy] = torch.randint(4, V, (int(noisy.sum()), K), generator=g)
    if sc.swap_frac:
        swap = torch.rand(n, generator=g) < sc.swap_frac
        answer[swap], rejected[swap] = rejected[swap].clone(), answer[swap].clone()
    head = torch.cat([torch.ones(n, 1, dtype=torch.long), prompt, torch.full((n, 1), 2)], dim=1)
    eos = torch.full((n, 1), 3)
    return torch.cat([head, answer, eos], 1), torch.cat([head, rejected, eos], 1)


def response_logps(model, seqs: torch.Tensor, fp16: bool):
    """Mean log-prob of the response tokens (answer + EOS) per sequence, and per-token NLL of them."""
    logits = model(input_ids=seqs).logits[:, :-1]
    if fp16:
        logits = logits.half()  # what an fp16 head hands to the loss
    logp = torch.log_softmax(logits, -1)
    targets = seqs[:, 1:]
    tok = logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)[:, K + 1:]  # response positions
    # In float16, exp(mean log-prob) rounds to exactly 1 once it is above -2**-12, and the
    # odds term log1p(-exp(.)) becomes -inf: the classic ORPO fp16 overflow on a memorised set.
    return tok.mean(-1)


def orpo_terms(model, chosen, rejected, beta: float, fp16: bool):
    both = response_logps(model, torch.cat([chosen, rejected]), fp16)
    lc, lr_ = both[: len(chosen)], both[len(chosen):]
    # log odds = log(p/(1-p)) per sequence, on the per-token-average probability (TRL's ORPO).
    log_odds = (lc - lr_) - (torch.log1p(-torch.exp(lc)) - torch.log1p(-torch.exp(lr_)))
    or_loss = -F.logsigmoid(log_odds).mean()
    nll = -lc.mean()
    loss = nll + beta * or_loss
    return loss, nll, or_loss, log_odds, lc, lr_


def lr_at(step: int, sc: Scenario) -> float:
    if step < sc.warmup:
        return sc.lr * (step + 1) / sc.warmup
    frac = (step - sc.warmup) / max(1, sc.steps - sc.warmup)
    if sc.schedule == "linear":
        return sc.lr * (1 - frac)
    if sc.schedule == "cosine":
        return sc.lr * 0.5 * (1 + math.cos(math.pi * frac))
    return sc.lr


def run(sc: Scenario) -> list[dict]:
    torch.manual_seed(sc.seed)
    g = torch.Generator().manual_seed(sc.seed)
    perm = torch.randperm(CONTENT, generator=g)
    cfg = LlamaConfig(vocab_size=V, hidden_size=sc.hidden, intermediate_size=2 * sc.hidden, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=32,
                      bos_token_id=1, eos_token_id=3, pad_token_id=0)
    model = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager")
    opt = torch.optim.AdamW(model.parameters(), lr=sc.lr, weight_decay=0.0)
    clean = Scenario("eval", noisy_chosen=0.0, swap_frac=0.0)
    eval_c, eval_r = make_pairs(torch.Generator().manual_seed(sc.seed + 1), EVAL_PAIRS, perm, clean)
    fixed = make_pairs(g, sc.train_pairs, perm, sc) if sc.train_pairs else None
    rows = []
    for step in range(1, sc.steps + 1):
        t0 = time.perf_counter()
        if fixed is not None:
            idx = torch.randint(0, sc.train_pairs, (sc.batch,), generator=g)
            chosen, rejected = fixed[0][idx], fixed[1][idx]
            epoch = step * sc.batch / sc.train_pairs
        else:
            chosen, rejected = make_pairs(g, sc.batch, perm, sc)
            epoch = step / sc.steps
        lr = lr_at(step - 1, sc)
        for group in opt.param_groups:
            group["lr"] = lr
        model.train()
        loss, nll, or_loss, log_odds, lc, lr_ = orpo_terms(model, chosen, rejected, sc.beta, sc.fp16_logits)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        dt = time.perf_counter() - t0
        row = {
            "step": step, "epoch": round(epoch, 4), "loss": loss.item(), "nll_loss": nll.item(),
            "or_loss": or_loss.item(), "log_odds_ratio": log_odds.mean().item(),
            "accuracy": (lc > lr_).float().mean().item(), "logps_chosen": lc.mean().item(),
            "logps_rejected": lr_.mean().item(), "margin": (lc - lr_).mean().item(),
            "ppl_chosen": math.exp(min(nll.item(), 50.0)) if math.isfinite(nll.item()) else nll.item(),
            "learning_rate": lr, "grad_norm": grad_norm.item(),
            "tokens_per_sec": 2 * chosen.numel() / dt, "step_time": dt,
        }
        if step % EVAL_EVERY == 0 or step == sc.steps:
            model.eval()
            with torch.no_grad():
                e = orpo_terms(model, eval_c, eval_r, sc.beta, sc.fp16_logits)
            el, enll, eor, elo, elc, elr = e
            row.update({
                "eval/loss": el.item(), "eval/nll_loss": enll.item(), "eval/or_loss": eor.item(),
                "eval/log_odds_ratio": elo.mean().item(), "eval/accuracy": (elc > elr).float().mean().item(),
                "eval/logps_chosen": elc.mean().item(), "eval/logps_rejected": elr.mean().item(),
                "eval/ppl_chosen": math.exp(min(enll.item(), 50.0)) if math.isfinite(enll.item()) else enll.item(),
            })
        rows.append(row)
    return rows


def _round(v):
    """Six significant digits: far below batch noise, and a third of the file size."""
    return float(f"{v:.6g}") if isinstance(v, float) else v


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="", help="Run only scenarios whose name starts with this.")
    ap.add_argument("--steps", type=int, default=0, help="Override steps per run (for a quick look).")
    args = ap.parse_args()
    torch.set_num_threads(1)
    hf_logging.set_verbosity_error()
    OUT.mkdir(parents=True, exist_ok=True)
    meta_path = OUT / "real_scenarios.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    for sc in scenarios():
        if not sc.name.startswith(args.only):
            continue
        if args.steps:
            sc.steps = args.steps
        t0 = time.perf_counter()
        rows = run(sc)
        with open(OUT / f"real_{sc.name}.jsonl", "w") as fh:
            for row in rows:
                fh.write(json.dumps({k: _round(v) for k, v in row.items()}) + "\n")
        meta[f"real_{sc.name}"] = {k: v for k, v in vars(sc).items() if k not in ("name", "extra")}
        last = rows[-1]
        print(f"{sc.name:22s} {time.perf_counter() - t0:5.1f}s  loss {rows[0]['loss']:.2f}->{last['loss']:.2f} "
              f"nll {last['nll_loss']:.2f} lor {last['log_odds_ratio']:.2f} eval_nll {last.get('eval/nll_loss', float('nan')):.2f}",
              flush=True)
    meta_path.write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
