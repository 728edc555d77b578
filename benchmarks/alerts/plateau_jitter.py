"""How often catastrophic_forgetting opens on a healthy run whose eval NLL sits on a noisy plateau.

The best eval so far is a minimum over noisy values, so the longer the plateau and the noisier the
eval set, the further the best sits below the typical value and the easier a chance rise "above the
best" becomes. Synthetic healthy runs (make_synthetic_traces.base: NLL decaying to a plateau, log odds
rising), eval every 10 steps with multiplicative jitter plus the generator's 0.01 absolute noise, 8
seeds per cell. Prints the runs (of 8) where the alert opened, by run length and jitter.

    python benchmarks/alerts/plateau_jitter.py [--threshold KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from make_synthetic_traces import base, rows_from  # noqa: E402

from orpo_dash.diagnostics import CATASTROPHIC_FORGETTING, diagnose  # noqa: E402

JITTERS = (0.011, 0.017, 0.022, 0.033)
LENGTHS = (320, 1000)
SEEDS = 8


def as_series(rows: list[dict]) -> dict[str, list[tuple[int, float]]]:
    out: dict[str, list[tuple[int, float]]] = {}
    for r in rows:
        for k, v in r.items():
            if k != "step":
                out.setdefault(k, []).append((r["step"], v))
    return out


def opened(n: int, jitter: float, seed: int, th: dict[str, float]) -> bool:
    rng = np.random.default_rng(5000 + seed)
    t, nll, lor = base(rng, n)
    rows = rows_from(t, nll, lor, rng, eval_nll=nll * (1 + rng.normal(0, jitter, n)))
    return any(a.kind == CATASTROPHIC_FORGETTING and a.state == "open" for a in diagnose(as_series(rows), th))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threshold", action="append", default=[])
    args = ap.parse_args()
    th = {k: float(v) for k, v in (s.split("=") for s in args.threshold)}
    print(f"{'steps':>6s} " + " ".join(f"jitter {j:.1%}".rjust(13) for j in JITTERS))
    for n in LENGTHS:
        cells = [f"{sum(opened(n, j, s, th) for s in range(SEEDS))}/{SEEDS}".rjust(13) for j in JITTERS]
        print(f"{n:6d} " + " ".join(cells))


if __name__ == "__main__":
    main()
