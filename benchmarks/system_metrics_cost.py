"""What the sys/ metrics cost the training loop (trainer/system_metrics.py).

Two parts, measured in one run:

- per call: `SystemSampler.due()` (paid every step) and `SystemSampler.sample()` (paid once per interval),
  median and p99 over --calls calls (perf_counter_ns around each call);
- per step: the trainer on the tiny test model (CPU), `system_metrics_seconds` 0 (off), 2 (the default) and
  1e-9 (a sample every step, the worst case), alternated --rounds times; the median `step_time` of each.

Target: the default interval costs under 0.1 % of a step. Prints the numbers.

    python -m benchmarks.system_metrics_cost [--calls 20000] [--rounds 3] [--steps 60]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from orpo_dash.run_config import RunConfig
from tests.trainer.conftest import PAIRS, RecordingReporter, build_model, build_tokenizer, write_jsonl
from trainer.system_metrics import SystemSampler
from trainer.worker import run


def per_call_us(call, calls: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    costs = []
    for _ in range(calls):
        start = time.perf_counter_ns()
        call()
        costs.append((time.perf_counter_ns() - start) / 1000)
    costs.sort()
    return statistics.median(costs), costs[int(0.99 * len(costs))]


def median_step_seconds(folder: Path, interval: float, steps: int) -> tuple[float, int]:
    """The median step_time of one run, and how many sys samples it reported."""
    config = RunConfig(model=str(folder / "model"), dataset=str(folder / "pairs.jsonl"), eval_fraction=0.25, max_length=64,
                       max_prompt_length=32, batch_size=2, max_steps=steps, seed=0, lr_scheduler="constant",
                       system_metrics_seconds=interval)
    reporter = RecordingReporter()
    assert run(config, reporter) == "completed"
    step_times = [values["step_time"] for _, values in reporter.train(timing=True).items()]
    samples = sum(1 for _, values in reporter.points if "sys/cpu_percent" in values)
    return statistics.median(step_times[1:]), samples  # the first step warms up


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=60)
    args = parser.parse_args()

    sampler = SystemSampler(2.0)
    due = per_call_us(sampler.due, args.calls)
    sample = per_call_us(sampler.sample, args.calls // 10)
    print(f"due():    median {due[0]:.3f} us, p99 {due[1]:.3f} us (every step)")
    print(f"sample(): median {sample[0]:.1f} us, p99 {sample[1]:.1f} us (once per interval; CPU device, no CUDA)")

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        tokenizer = build_tokenizer()
        build_model(len(tokenizer)).save_pretrained(folder / "model")
        tokenizer.save_pretrained(folder / "model")
        write_jsonl(folder / "pairs.jsonl", PAIRS)
        results: dict[float, list[float]] = {0.0: [], 2.0: [], 1e-9: []}
        counts: dict[float, int] = {}
        for _ in range(args.rounds):
            for interval in results:  # alternated, so a busy moment on the machine hits every setting alike
                seconds, counts[interval] = median_step_seconds(folder, interval, args.steps)
                results[interval].append(seconds)
    off = statistics.median(results[0.0])
    for interval, label in ((0.0, "off"), (2.0, "every 2 s (default)"), (1e-9, "every step (worst case)")):
        step = statistics.median(results[interval])
        print(f"{label:>24}: median step {1000 * step:.2f} ms ({100 * (step / off - 1):+.1f} % vs off; "
              f"{counts[interval]} samples in the last {args.steps}-step run); rounds: "
              + ", ".join(f"{1000 * s:.2f}" for s in results[interval]))
    print(f"default interval, per step: due() + sample()/(2 s / step) = "
          f"{due[0] + sample[0] * off / 2.0:.3f} us = {100 * (due[0] + sample[0] * off / 2.0) / (off * 1e6):.4f} % of a {1000 * off:.1f} ms step")


if __name__ == "__main__":
    main()
