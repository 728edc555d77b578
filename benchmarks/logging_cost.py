"""What logging one step costs the training loop: `StreamingReporter.metrics()` with 15 metrics.

Measured per call (perf_counter_ns around the call only) while a simulated training loop runs at
--rate steps/s (the step's "compute" is a sleep, as a GPU step is for Python), three ways, in one run:

- baseline: a synchronous send per step (one websocket batch, then wait for its ack), the pattern of
  trackers that log with one blocking request per step;
- streaming client, dashboard up;
- streaming client, dashboard down (nothing listens at the URL: points wait in memory).

Target: median <= 20 us per step with the dashboard up and down. Prints medians, p99 and ratios.

    python benchmarks/logging_cost.py [--steps 3000] [--rate 500]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from websockets.sync.client import connect

from benchmarks._live import Dashboard, free_port, tiny_dataset
from trainer.streaming import StreamingReporter, websocket_url

METRICS = [f"metric_{i}" for i in range(15)]


def timed_loop(log_step: Callable[[int, dict[str, float]], None], steps: int, rate: float) -> list[float]:
    """Per-call cost in microseconds of log_step inside a loop paced at `rate` steps/s."""
    costs = []
    period = 1.0 / rate
    for step in range(steps):
        values = {name: step * 0.001 + i for i, name in enumerate(METRICS)}  # built by the loop, not timed
        start = time.perf_counter_ns()
        log_step(step, values)
        costs.append((time.perf_counter_ns() - start) / 1000)
        time.sleep(period)  # the step's compute: Python waits on the accelerator
    return costs


@contextlib.contextmanager
def synchronous_sender(url: str, run_id: int, token: str) -> Iterator[Callable[[int, dict[str, float]], None]]:
    with connect(websocket_url(url, run_id)) as ws:
        ws.send(json.dumps({"type": "hello", "protocol": 1, "token": token}))
        seq = [json.loads(ws.recv())["acked_seq"]]

        def log_step(step: int, values: dict[str, float]) -> None:
            seq[0] += 1
            now = time.time()
            ws.send(json.dumps({"type": "batch", "seq": seq[0], "points": [[step, n, v, now] for n, v in values.items()]}))
            assert json.loads(ws.recv())["type"] == "ack"

        yield log_step


def summary(costs: list[float]) -> tuple[float, float]:
    ordered = sorted(costs)
    return statistics.median(ordered), ordered[int(len(ordered) * 0.99)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3000, help="steps per measurement")
    parser.add_argument("--rate", type=float, default=500.0, help="simulated training steps per second")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="orpo-logging-cost-"))
    dataset = tiny_dataset(folder)

    with Dashboard() as dash:
        run_id, token = dash.register(dataset)
        with synchronous_sender(dash.url, run_id, token) as log_step:
            baseline = summary(timed_loop(log_step, args.steps, args.rate))

        run_id, token = dash.register(dataset)
        reporter = StreamingReporter(dash.url, run_id, token, spill_path=folder / "up.jsonl")
        assert reporter.connected.wait(10)
        up = summary(timed_loop(reporter.metrics, args.steps, args.rate))
        reporter.close(timeout=60)
        assert not reporter.undelivered_batches, "points were not delivered"

    down_reporter = StreamingReporter(f"http://127.0.0.1:{free_port()}", None, None, config={"dataset": "x"},
                                      spill_path=folder / "down.jsonl")
    down = summary(timed_loop(down_reporter.metrics, args.steps, args.rate))
    start = time.perf_counter()
    down_reporter.close()
    close_seconds = time.perf_counter() - start

    print(f"{args.steps} steps of {len(METRICS)} metrics at {args.rate:g} steps/s; cost of the logging call per step:")
    print(f"baseline (synchronous websocket send + ack per step): median {baseline[0]:8.1f} us  p99 {baseline[1]:8.1f} us")
    for label, (median, p99) in (("streaming client, dashboard up:  ", up), ("streaming client, dashboard down:", down)):
        print(f"{label}                   median {median:8.1f} us  p99 {p99:8.1f} us  "
              f"ratio {baseline[0] / median:6.0f}x faster  target median <= 20 us")
    print(f"close() with the dashboard down (points left in the spill file): {close_seconds:.2f} s")


if __name__ == "__main__":
    main()
