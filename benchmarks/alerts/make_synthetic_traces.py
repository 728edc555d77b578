"""Seeded synthetic traces for what the tiny real runs do not reproduce, and for edge cases.

Curves are exponential learning curves with batch-sized noise (Gaussian plus occasional heavy-tailed
spikes); a pitfall is injected at a known onset step, which is the label. Covers:
over-penalization (chosen log-prob falls while the log odds ratio grows: our tiny real runs with
beta up to 100 only learned slowly), a rising total loss, eval NLL rising after falling, NaN/Inf at
step 1 and mid-run, sparse TRL-style logging, and healthy-but-awkward runs (plateaus with heavy
noise, borderline slow declines, spikes) that must not alert.

    python benchmarks/alerts/make_synthetic_traces.py
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from traces import TRACES, trace_path, write_trace  # noqa: E402


def base(rng: np.random.Generator, n: int, *, init=3.7, floor=0.9, tau=60.0, lor_max=3.0, tau_lor=80.0):
    t = np.arange(1, n + 1, dtype=float)
    nll = floor + (init - floor) * np.exp(-t / tau)
    lor = lor_max * (1 - np.exp(-t / tau_lor))
    return t, nll, lor


def noise(rng: np.random.Generator, n: int, sigma: float, spikes: float = 0.02) -> np.ndarray:
    e = rng.normal(0, sigma, n)
    hit = rng.random(n) < spikes
    e[hit] += rng.standard_t(2, int(hit.sum())) * 3 * sigma
    return e


def rows_from(t, nll, lor, rng, *, beta=0.2, sigma=0.12, eval_every=10, eval_nll=None, every=1):
    n = len(t)
    nll_o = nll + noise(rng, n, sigma)
    lor_o = lor + noise(rng, n, sigma * 2)
    or_loss = np.log1p(np.exp(-lor_o))
    rows = []
    for i in range(0, n, every):
        r = {"step": int(t[i]), "loss": float(nll_o[i] + beta * or_loss[i]), "nll_loss": float(nll_o[i]),
             "or_loss": float(or_loss[i]), "log_odds_ratio": float(lor_o[i]), "logps_chosen": float(-nll_o[i]),
             "logps_rejected": float(-nll_o[i] - 0.5 * max(lor_o[i], 0)),
             "accuracy": float(min(1, max(0, 0.5 + 0.15 * lor_o[i] + rng.normal(0, 0.1)))),
             "grad_norm": float(abs(1 + rng.normal(0, 0.3))), "learning_rate": 1e-4}
        if eval_every and int(t[i]) % eval_every == 0:
            en = (eval_nll if eval_nll is not None else nll)[i] + rng.normal(0, 0.01)
            r["eval/nll_loss"] = float(en)
            r["eval/ppl_chosen"] = float(math.exp(en))
        rows.append(r)
    return rows


def generate() -> dict[str, tuple[list[dict], list[dict]]]:
    out: dict[str, tuple[list[dict], list[dict]]] = {}
    for i in range(6):
        rng = np.random.default_rng(1000 + i)
        n, t0 = 400, int(rng.integers(150, 250))
        t, nll, lor = base(rng, n, floor=0.8 + 0.2 * i / 5)
        ramp = np.clip(t - t0, 0, None)
        rate = 0.002 + 0.001 * i  # nats/token/step the chosen log-prob loses
        nll, lor = nll + rate * ramp, lor + 0.01 * ramp
        out[f"syn_over_penalization_{i}"] = (rows_from(t, nll, lor, rng, beta=2.0), [{"kind": "over_penalization", "onset_step": t0}])

        rng = np.random.default_rng(1100 + i)
        t, nll, lor = base(rng, n)
        t0 = int(rng.integers(150, 250))
        ramp = np.clip(t - t0, 0, None)
        nll2 = nll + (0.003 + 0.001 * i) * ramp  # loss climbs back; the preference term stalls too
        lor2 = lor - (0.004 + 0.001 * i) * ramp
        out[f"syn_loss_rising_{i}"] = (rows_from(t, nll2, lor2, rng, beta=1.0, eval_nll=nll2),
                                       [{"kind": "loss_rising", "onset_step": t0}])

        rng = np.random.default_rng(1200 + i)
        t, nll, lor = base(rng, n)
        t0 = int(rng.integers(12, 22)) * 10
        eval_nll = nll + (0.002 + 0.001 * i) * np.clip(t - t0, 0, None)
        out[f"syn_forgetting_{i}"] = (rows_from(t, nll, lor, rng, eval_nll=eval_nll),
                                      [{"kind": "catastrophic_forgetting", "onset_step": t0}])

        rng = np.random.default_rng(1300 + i)
        t, nll, lor = base(rng, n)
        t0 = 1 if i < 2 else int(rng.integers(50, 350))
        rows = rows_from(t, nll, lor, rng)
        key = ["loss", "grad_norm", "log_odds_ratio", "nll_loss", "eval/nll_loss", "loss"][i]
        for r in rows:
            if r["step"] >= t0 and (key in r or r["step"] > t0):
                r[key if key in r else "loss"] = [float("nan"), float("inf")][i % 2]
        out[f"syn_non_finite_{i}"] = (rows, [{"kind": "non_finite", "onset_step": t0 if key != "eval/nll_loss" else
                                             next(r["step"] for r in rows if r["step"] >= t0 and "eval/nll_loss" in r)}])

    for i in range(10):  # healthy but awkward
        rng = np.random.default_rng(2000 + i)
        n = 500
        kw = dict(init=3.0 + 0.2 * i, floor=0.6 + 0.1 * i, tau=30 + 10 * i, lor_max=1.0 + 0.4 * i, tau_lor=40 + 10 * i)
        t, nll, lor = base(rng, n, **kw)
        if i % 3 == 0:
            lor = lor - 0.0005 * t  # a slow late drift down, well under the alert's size
        sigma = [0.05, 0.12, 0.25, 0.35][i % 4]
        every = 5 if i == 9 else 1  # sparse logging, like a TRL logging_steps=5 run
        out[f"syn_healthy_{i}"] = (rows_from(t, nll, lor, rng, sigma=sigma, every=every), [])
    return out


def main() -> None:
    TRACES.mkdir(parents=True, exist_ok=True)
    label_path = TRACES / "labels.json"
    labels = json.loads(label_path.read_text()) if label_path.exists() else {}
    for name, (rows, lab) in generate().items():
        write_trace(trace_path(name), rows)
        labels[name] = lab
    label_path.write_text(json.dumps(dict(sorted(labels.items())), indent=1) + "\n")
    print(f"wrote {len(labels)} labels")


if __name__ == "__main__":
    main()
