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
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from make_synthetic_traces import base, rows_from  # noqa: E402
from traces import write_trace  # noqa: E402

from orpo_dash.diagnostics import CATASTROPHIC_FORGETTING, diagnose, load_metrics_file  # noqa: E402

JITTERS = (0.011, 0.017, 0.022, 0.033)
LENGTHS = (320, 1000)
SEEDS = 8


def opened(n: int, jitter: float, seed: int, th: dict[str, float], folder: Path) -> bool:
    """Written and read back as a trace file, exactly as the scored collection is."""
    rng = np.random.default_rng(seed)
    t, nll, lor = base(rng, n)
    path = folder / f"plateau_{n}_{jitter}_{seed}.jsonl.gz"
    write_trace(path, rows_from(t, nll, lor, rng, eval_nll=nll * (1 + rng.normal(0, jitter, n))))
    return any(a.kind == CATASTROPHIC_FORGETTING and a.state == "open" for a in diagnose(load_metrics_file(path), th))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threshold", action="append", default=[])
    args = ap.parse_args()
    th = {k: float(v) for k, v in (s.split("=") for s in args.threshold)}
    print(f"{'steps':>6s} " + " ".join(f"jitter {j:.1%}".rjust(13) for j in JITTERS))
    with tempfile.TemporaryDirectory() as tmp:
        for n in LENGTHS:
            cells = [f"{sum(opened(n, j, 5000 + s, th, Path(tmp)) for s in range(SEEDS))}/{SEEDS}".rjust(13) for j in JITTERS]
            print(f"{n:6d} " + " ".join(cells))


if __name__ == "__main__":
    main()
