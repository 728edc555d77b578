"""catastrophic_forgetting on fresh seeds: the trend-since-best rule against the level rule alone.

The defaults were chosen on the scored collection and on plateau_jitter.py's seeds; this checks them
on traces neither saw, built by the same recipes with other seeds: 30 synthetic forgetting runs
(make_synthetic_traces' syn_forgetting recipe: eval NLL climbing from a random step at one of six
rates) and 16 healthy plateau runs per cell (plateau_jitter's recipe). "level rule only" is
`forget_sure_frac=0` (every rise above forget_rise_frac opens without a trend), the rule before it.

    python benchmarks/alerts/forgetting_holdout.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from make_synthetic_traces import base, rows_from  # noqa: E402
from plateau_jitter import JITTERS, LENGTHS, opened  # noqa: E402
from score import first_openings  # noqa: E402
from traces import write_trace  # noqa: E402

from orpo_dash.diagnostics import CATASTROPHIC_FORGETTING  # noqa: E402

RULES = {"level rule only": {"forget_sure_frac": 0.0}, "defaults (trend since best)": {}}
FORGETTING_SEEDS = range(7200, 7230)
PLATEAU_SEEDS = range(9000, 9016)


def first_open(rows: list[dict], th: dict[str, float], folder: Path) -> int | None:
    path = folder / "trace.jsonl.gz"
    write_trace(path, rows)
    return first_openings(path, th).get(CATASTROPHIC_FORGETTING)


def forgetting(th: dict[str, float], folder: Path) -> tuple[int, list[int]]:
    caught, delays = 0, []
    for i, seed in enumerate(FORGETTING_SEEDS):
        rng = np.random.default_rng(seed)
        t, nll, lor = base(rng, 400)
        t0 = int(rng.integers(12, 22)) * 10
        eval_nll = nll + (0.002 + 0.001 * (i % 6)) * np.clip(t - t0, 0, None)
        step = first_open(rows_from(t, nll, lor, rng, eval_nll=eval_nll), th, folder)
        if step is not None:
            caught += 1
            delays.append(max(0, step - t0))
    return caught, delays


def plateau_alarms(th: dict[str, float], n: int, jitter: float, folder: Path) -> int:
    return sum(opened(n, jitter, seed, th, folder) for seed in PLATEAU_SEEDS)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for label, th in RULES.items():
            caught, delays = forgetting(th, folder)
            print(f"{label}: forgetting caught {caught}/{len(FORGETTING_SEEDS)}, "
                  f"median delay {np.median(delays):.0f} steps, 90th percentile {np.percentile(delays, 90):.0f}")
            for n in LENGTHS:
                cells = ", ".join(f"jitter {j:.1%}: {plateau_alarms(th, n, j, folder)}/{len(PLATEAU_SEEDS)}"
                                  for j in JITTERS)
                print(f"  healthy {n}-step plateaus with an alert: {cells}")


if __name__ == "__main__":
    main()
