"""Throughput of AlertEngine.feed: microseconds per step of 15 train metrics (+ 8 eval metrics every 10 steps).

Feeds a seeded healthy-looking stream in server-sized batches (500 points) and reports the best of
--repeats runs, for the default schedule (detectors once per `check_every` steps) and for the old
schedule (check_every=1: every detector at every step), measured in the same process.

    python benchmarks/alerts/engine_speed.py [--steps 4000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from orpo_dash.diagnostics import DEFAULT_THRESHOLDS, AlertEngine

TRAIN = ("loss", "nll_loss", "or_loss", "log_odds_ratio", "accuracy", "logps_chosen", "logps_rejected", "margin",
         "ppl_chosen", "learning_rate", "epoch", "grad_norm", "tokens_per_sec", "step_time", "rewards_gap")
EVAL = ("eval/loss", "eval/nll_loss", "eval/or_loss", "eval/log_odds_ratio", "eval/accuracy",
        "eval/logps_chosen", "eval/logps_rejected", "eval/ppl_chosen")


def stream(steps: int, seed: int = 0) -> list[tuple[int, str, float]]:
    rng = np.random.default_rng(seed)
    t = np.arange(1, steps + 1, dtype=float)
    nll = 0.9 + 2.8 * np.exp(-t / 60) + rng.normal(0, 0.1, steps)
    lor = 3.0 * (1 - np.exp(-t / 80)) + rng.normal(0, 0.2, steps)
    points: list[tuple[int, str, float]] = []
    for i, step in enumerate(range(1, steps + 1)):
        values = {"loss": nll[i] + 0.2 * np.log1p(np.exp(-lor[i])), "nll_loss": nll[i], "log_odds_ratio": lor[i],
                  "logps_chosen": -nll[i], "ppl_chosen": float(np.exp(nll[i]))}
        for name in TRAIN:
            points.append((step, name, float(values.get(name, rng.random()))))
        if step % 10 == 0:
            for name in EVAL:
                points.append((step, name, float(nll[i] + 0.05 if name == "eval/nll_loss" else rng.random())))
    return points


def us_per_step(points: list[tuple[int, str, float]], steps: int, thresholds: dict[str, float], repeats: int,
                batch: int = 500) -> float:
    best = float("inf")
    for _ in range(repeats):
        engine = AlertEngine(thresholds)
        t0 = time.perf_counter()
        for start in range(0, len(points), batch):
            engine.feed(points[start: start + batch])
        engine.flush()
        best = min(best, time.perf_counter() - t0)
    return best / steps * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    points = stream(args.steps)
    us_per_step(points[:3000], 200, {}, 1)  # warm-up: numpy's lazy imports, caches
    new = us_per_step(points, args.steps, {}, args.repeats)
    old = us_per_step(points, args.steps, {"check_every": 1}, max(1, args.repeats // 2))
    per_point = len(points) / args.steps
    k = int(DEFAULT_THRESHOLDS["check_every"])
    print(f"{args.steps} steps, {per_point:.1f} points/step, batches of 500 points, best of {args.repeats}")
    print(f"check_every={k:<3d} (default): {new:8.1f} us/step  {new / per_point:6.2f} us/point  "
          f"{per_point / new * 1e6:12,.0f} points/s")
    print(f"check_every=1  (old schedule): {old:8.1f} us/step  {old / per_point:6.2f} us/point  "
          f"{per_point / old * 1e6:12,.0f} points/s")
    print(f"speed-up: {old / new:.1f}x")


if __name__ == "__main__":
    main()
