"""Serving a chart of a 1,000,000-step run: the downsampled series for one metric, and the run page's
first data request (every metric), timed on the server side through the real HTTP API.

Baseline, measured in the same run on the same database: reading the full raw series (what the
endpoint would cost without summaries). Prints milliseconds and the ratio.

    python benchmarks/chart_query.py [--steps 1000000] [--metrics 14]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from benchmarks._live import Dashboard, tiny_dataset
from orpo_dash.metric_names import TRAIN_METRICS
from server.db import make_engine, make_session_factory
from server.models import Run
from server.services.metrics import _raw, insert_points
from server.services.rollups import RollupTracker


def populate(database_url: str, run_id: int, steps: int, metrics: list[str]) -> None:
    """Write the points through the same insert + summary functions that ingestion uses."""
    factory = make_session_factory(make_engine(database_url))
    tracker = RollupTracker()
    chunk = 20_000
    for start in range(0, steps, chunk):
        points = [(s, m, 1.0 / (s + 1) + (5.0 if s == 777_777 else 0.0), float(s)) for s in range(start, min(steps, start + chunk)) for m in metrics]
        with factory() as session, session.begin():
            insert_points(session=session, run_id=run_id, points=points)
            tracker.update(session=session, run_id=run_id, points=points)
    with factory() as session, session.begin():
        # Ingestion keeps each metric's latest value on the run; the page's request lists metrics from it.
        session.get(Run, run_id).latest_metrics = {m: 0.0 for m in metrics}


def timed(fn, repeats: int = 7) -> float:  # type: ignore[no-untyped-def]
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--metrics", type=int, default=len(TRAIN_METRICS), help="metrics in the run (the page asks for all)")
    args = parser.parse_args()
    metrics = list(TRAIN_METRICS[: args.metrics])
    with Dashboard() as dash:
        run_id, _ = dash.register(tiny_dataset(Path(tempfile.mkdtemp())))
        started = time.perf_counter()
        populate(dash.database_url, run_id, args.steps, metrics)
        print(f"populated {args.steps:,} steps x {len(metrics)} metrics in {time.perf_counter() - started:.0f} s")
        client = httpx.Client(base_url=dash.url, timeout=120)
        url = f"/api/runs/{run_id}/metrics"

        one = timed(lambda: client.get(url, params={"names": "loss", "max_points": 2000}).raise_for_status())
        # Exactly what static/js/run_detail.js sends first: every metric, 2,000 points each.
        page = timed(lambda: client.get(url, params={"max_points": 2000}).raise_for_status(), repeats=5)
        assert len(client.get(url, params={"max_points": 2000}).json()["series"]) == len(metrics)
        zoom = timed(lambda: client.get(url, params={"names": "loss", "max_points": 2000, "min_step": 500_000, "max_step": 502_000}).raise_for_status())
        body = client.get(url, params={"names": "loss", "max_points": 2000}).json()
        assert 777_777 in body["series"]["loss"]["step"], "the spike must survive downsampling"

        factory = make_session_factory(make_engine(dash.database_url))

        def raw_read() -> None:
            with factory() as session:
                _raw(session, run_id, "loss", 0, args.steps)

        baseline = timed(raw_read, repeats=3)
    print(f"baseline: full raw read of one metric ({args.steps:,} points): {baseline:8.1f} ms")
    print(f"one metric, downsampled to 2,000 points (HTTP):      {one:8.1f} ms  ratio {baseline / one:6.1f}x faster  target <= 100 ms")
    print(f"run page first request, all {len(metrics)} metrics (HTTP):    {page:8.1f} ms  ratio {baseline * len(metrics) / page:6.1f}x faster")
    print(f"zoom to 2,001 steps at full resolution (HTTP):       {zoom:8.1f} ms")


if __name__ == "__main__":
    main()
