"""Seeded synthetic traces of slow chosen-NLL descents, for the tuning collection (traces/syn_slow_*).

Exponential NLL curves from ~6 nats/token (a model that has not seen the format) towards a floor,
with the floor and time constant set so that some end just above and some just below the level at
which label_traces.py's rule calls the format not learned (0.6 x the start over the last 50 steps),
on runs of 150-300 steps; plus two that fall fast in the first steps and then sit on a plateau (a
high floor reached early). The log odds ratio rises as in a healthy run and the eval NLL follows the
train NLL, so no other pitfall is there. Labels are NOT set here: label_added.py applies the rules.

    python benchmarks/alerts/make_slow_synthetic.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from make_synthetic_traces import rows_from  # noqa: E402
from traces import TRACES, write_trace  # noqa: E402

# (steps, floor, tau): NLL = floor + (6 - floor) * exp(-t / tau), batch noise 0.12
CURVES = [
    (150, 3.0, 60), (150, 3.6, 60), (200, 2.5, 120), (200, 3.0, 150), (300, 3.2, 100), (300, 3.5, 120),
    (250, 2.0, 200), (180, 3.3, 80), (200, 3.8, 15), (300, 3.4, 10),
]


def main() -> None:
    for i, (n, floor, tau) in enumerate(CURVES):
        rng = np.random.default_rng(90_000 + i)
        t = np.arange(1, n + 1, dtype=float)
        nll = floor + (6.0 - floor) * np.exp(-t / tau)
        lor = 3.0 * (1 - np.exp(-t / 40))
        write_trace(TRACES / f"syn_slow_{i}.jsonl.gz", rows_from(t, nll, lor, rng, eval_nll=nll))
        print(f"syn_slow_{i}: {n} steps, NLL 6.0 -> {nll[-1]:.2f} (floor {floor}, tau {tau})")


if __name__ == "__main__":
    main()
