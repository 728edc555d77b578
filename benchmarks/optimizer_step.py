"""The AdamW step on the default model (SmolLM2-135M, float32, CPU): the trainer's fused kernel
against torch's default multi-tensor (foreach) implementation, measured in the same run.

The update is the same algorithm; the fused kernel makes one pass over each weight, its gradient and
the two moment buffers instead of one per elementwise operation, so on a memory-bound CPU it is
several times faster. The first step of each (buffer allocation) is left out.

    python -m benchmarks.optimizer_step [--steps 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from orpo_dash.run_config import BUNDLED_MODEL
from trainer.models import load_model


def median_step_seconds(params: list[torch.nn.Parameter], steps: int, **kind: bool) -> float:
    optimizer = torch.optim.AdamW(params, lr=1e-5, **kind)
    optimizer.step()  # allocates the moment buffers
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    model = load_model(BUNDLED_MODEL, dtype="float32", device=torch.device("cpu"))
    params = [p for p in model.parameters() if p.requires_grad]
    generator = torch.Generator().manual_seed(0)
    for p in params:
        p.grad = torch.randn(p.shape, generator=generator) * 1e-3
    print(f"{sum(p.numel() for p in params) / 1e6:.0f}M float32 parameters, {torch.get_num_threads()} threads")
    baseline = median_step_seconds(params, args.steps, foreach=True)
    fused = median_step_seconds(params, args.steps, fused=True)
    print(f"baseline (torch default, foreach): {baseline * 1000:8.1f} ms per step")
    print(f"fused (what the trainer uses):     {fused * 1000:8.1f} ms per step   ratio {baseline / fused:5.1f}x faster")


if __name__ == "__main__":
    main()
