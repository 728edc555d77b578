"""Sustained ingestion into SQLite through the real worker client and the real server.

Baseline, measured in the same run: the naive pattern other trackers use (one synchronous
request per step, like MLflow's per-step log_batch), i.e. our HTTP-free floor is compared
against one websocket round-trip per step. Prints points/s and the ratio to the baseline.

    python benchmarks/ingest_throughput.py [--points 1000000] [--workers 10]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import time

from websockets.sync.client import connect

from benchmarks._live import Dashboard, tiny_dataset
from trainer.streaming import StreamingReporter, websocket_url

METRICS = [f"metric_{i}" for i in range(15)]


def stream(url: str, run_id: int, token: str, points: int, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    reporter = StreamingReporter(url, run_id, token)
    steps = points // len(METRICS)
    start = time.perf_counter()
    for step in range(steps):
        reporter.metrics(step, {name: step * 0.001 for name in METRICS})
    reporter.close(timeout=600)
    out.put((steps * len(METRICS), time.perf_counter() - start, reporter._spilled_lines))


def naive_per_step(url: str, run_id: int, token: str, steps: int) -> float:
    """One batch per step, waiting for its ack before the next step: the synchronous pattern."""
    with connect(websocket_url(url, run_id)) as ws:
        ws.send(json.dumps({"type": "hello", "protocol": 1, "token": token}))
        seq = json.loads(ws.recv())["acked_seq"]
        start = time.perf_counter()
        for step in range(steps):
            seq += 1
            now = time.time()
            ws.send(json.dumps({"type": "batch", "seq": seq, "points": [[step, n, 0.5, now] for n in METRICS]}))
            assert json.loads(ws.recv())["type"] == "ack"
        return steps * len(METRICS) / (time.perf_counter() - start)


def run_workers(dash: Dashboard, dataset, workers: int, points_each: int) -> float:  # type: ignore[no-untyped-def]
    out: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
    procs = []
    for _ in range(workers):
        run_id, token = dash.register(dataset)
        procs.append(multiprocessing.Process(target=stream, args=(dash.url, run_id, token, points_each, out)))
    start = time.perf_counter()
    for proc in procs:
        proc.start()
    results = [out.get(timeout=900) for _ in procs]
    elapsed = time.perf_counter() - start
    for proc in procs:
        proc.join()
    assert all(spilled == 0 for _, _, spilled in results), "some points were not delivered"
    return sum(n for n, _, _ in results) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=600_000, help="points for the single-worker run")
    parser.add_argument("--workers", type=int, default=10)
    parser.add_argument("--baseline-steps", type=int, default=500)
    args = parser.parse_args()
    import tempfile
    from pathlib import Path

    dataset = tiny_dataset(Path(tempfile.mkdtemp()))
    with Dashboard() as dash:
        run_id, token = dash.register(dataset)
        baseline = naive_per_step(dash.url, run_id, token, args.baseline_steps)
        one = run_workers(dash, dataset, 1, args.points)
        many = run_workers(dash, dataset, args.workers, args.points // args.workers)
    print(f"baseline (synchronous batch per step of 15): {baseline:12,.0f} points/s")
    print(f"1 worker, streaming client:                  {one:12,.0f} points/s  ratio {one / baseline:6.1f}x  target >= 100,000")
    print(f"{args.workers} workers, streaming client:                 {many:12,.0f} points/s  ratio {many / baseline:6.1f}x  target >= 100,000")


if __name__ == "__main__":
    main()
