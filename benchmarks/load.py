"""A team's load: 10 workers x 20 steps/s x 15 metrics, 20 browsers watching, on SQLite (one dashboard
process) and on PostgreSQL with two dashboard processes sharing the database (server/fanout.py).

Workers stream through the real client (trainer/streaming.py) from one process, browsers subscribe
to `/ws/runs/{id}` from another; each run has two browsers, and on PostgreSQL its worker streams to
one dashboard process while one of its browsers watches on the other, so half the subscribers see
points that crossed processes through LISTEN/NOTIFY. A step's latency is when a browser has all 15 of
its points minus the time the worker's `metrics()` call stamped on them (same machine, same clock).
Afterwards every run's points are counted in the database: points lost must be 0.

Baseline, in the same run: the SQLite single-process dashboard; PostgreSQL's figures are also given
as a ratio of it. Target: 0 points lost and p95 <= 250 ms on both.

    python -m benchmarks.load [--seconds 120] [--workers 10] [--rate 20] [--browsers 20]
        [--postgres postgresql://postgres@127.0.0.1:5432/postgres] [--only sqlite|postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import sqlite3
import statistics
import tempfile
import threading
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from benchmarks._live import Dashboard, tiny_dataset

METRICS = [f"metric_{i}" for i in range(15)]
TARGET_P95_MS = 250.0


@dataclass
class Stream:
    worker_url: str  # the dashboard process the worker streams to
    browser_urls: list[str]  # where its browsers subscribe
    run_id: int
    token: str


def run_workers(streams: list[Stream], rate: float, seconds: float, out: Any) -> None:
    """One thread per worker, each logging `rate` steps/s like a training loop."""
    from trainer.streaming import StreamingReporter

    steps = int(rate * seconds)
    results: list[tuple[int, int, int]] = []

    def work(stream: Stream) -> None:
        reporter = StreamingReporter(stream.worker_url, stream.run_id, stream.token,
                                     spill_path=Path(tempfile.gettempdir()) / f"load-{uuid.uuid4().hex}.jsonl")
        reporter.connected.wait(30)
        start = time.perf_counter()
        for step in range(steps):
            time.sleep(max(0.0, start + step / rate - time.perf_counter()))
            reporter.metrics(step, {name: step * 0.01 + i for i, name in enumerate(METRICS)})
        reporter.close(timeout=120)
        results.append((stream.run_id, reporter.undelivered_batches, reporter.dropped_batches))

    threads = [threading.Thread(target=work, args=(stream,)) for stream in streams]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    out.put((results, time.process_time()))


def run_browsers(subscriptions: list[tuple[str, int]], steps: int, seconds: float, ready: Any, out: Any) -> None:
    """Every subscriber in one asyncio loop; returns, per subscriber, the steps seen and their latencies (ms)."""
    from websockets.asyncio.client import connect

    async def watch(url: str, run_id: int, subscribed: asyncio.Event) -> tuple[int, list[float]]:
        count: dict[int, int] = {}
        latencies: list[float] = []
        async with connect(url.replace("http://", "ws://") + f"/ws/runs/{run_id}", max_size=None) as ws:
            await ws.send(orjson.dumps({"type": "subscribe", "after_step": -1}).decode())
            subscribed.set()
            deadline = time.monotonic() + seconds + 120
            while len(latencies) < steps and time.monotonic() < deadline:
                try:
                    raw = await asyncio.wait_for(ws.recv(), timeout=max(0.1, deadline - time.monotonic()))
                except TimeoutError:
                    break
                now = time.time()
                message = orjson.loads(raw)
                if message["type"] != "points":
                    continue
                for step, _name, _value, stamped in message["points"]:
                    count[step] = count.get(step, 0) + 1
                    if count[step] == len(METRICS):
                        latencies.append((now - stamped) * 1000)
        return len(latencies), latencies

    async def main() -> list[tuple[int, list[float]]]:
        events = [asyncio.Event() for _ in subscriptions]
        tasks = [asyncio.create_task(watch(url, run_id, event)) for (url, run_id), event in zip(subscriptions, events, strict=True)]
        await asyncio.gather(*(event.wait() for event in events))
        ready.set()
        return await asyncio.gather(*tasks)

    watched = asyncio.run(main())
    out.put((watched, time.process_time()))


def stored_points(database_url: str, run_ids: list[int]) -> int:
    if database_url.startswith("sqlite"):
        with sqlite3.connect(database_url.removeprefix("sqlite:///")) as connection:
            marks = ",".join("?" * len(run_ids))
            return connection.execute(f"SELECT count(*) FROM metric_points WHERE run_id IN ({marks})", run_ids).fetchone()[0]
    import psycopg

    with psycopg.connect(database_url.replace("postgresql+psycopg://", "postgresql://")) as connection:
        row = connection.execute("SELECT count(*) FROM metric_points WHERE run_id = ANY(%s)", (run_ids,)).fetchone()
        return int(row[0]) if row else 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(dashboards: list[Dashboard], args: argparse.Namespace) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="orpo-load-"))
    dataset = tiny_dataset(folder)
    streams = []
    for index in range(args.workers):
        home = dashboards[index % len(dashboards)]
        other = dashboards[(index + 1) % len(dashboards)]  # the same one when there is only one
        run_id, token = home.register(dataset)
        per_run = args.browsers // args.workers + (index < args.browsers % args.workers)
        browsers = [(home.url, other.url)[k % 2] for k in range(per_run)]  # one watching where it streams, one elsewhere
        streams.append(Stream(home.url, browsers, run_id, token))
    steps = int(args.rate * args.seconds)
    spawn = multiprocessing.get_context("spawn")
    results: Any = spawn.Queue()
    latencies_out: Any = spawn.Queue()
    ready = spawn.Event()
    subscriptions = [(url, stream.run_id) for stream in streams for url in stream.browser_urls]
    browsers = spawn.Process(target=run_browsers, args=(subscriptions, steps, args.seconds, ready, latencies_out))
    browsers.start()
    if not ready.wait(60):
        raise RuntimeError("the browsers did not subscribe within 60 s")
    cpu_before = sum(cpu_seconds(dash.process.pid) for dash in dashboards)
    started = time.monotonic()
    workers = spawn.Process(target=run_workers, args=(streams, args.rate, args.seconds, results))
    workers.start()
    worker_results, workers_cpu = results.get(timeout=args.seconds + 300)
    watched, browsers_cpu = latencies_out.get(timeout=args.seconds + 300)
    server_cpu = sum(cpu_seconds(dash.process.pid) for dash in dashboards) - cpu_before
    elapsed = time.monotonic() - started
    workers.join(30)
    browsers.join(30)
    run_ids = [stream.run_id for stream in streams]
    sent = steps * len(METRICS) * args.workers
    stored = stored_points(dashboards[0].database_url, run_ids)
    latencies = sorted(value for _, values in watched for value in values)
    return {
        "sent": sent, "lost": sent - stored, "undelivered": sum(r[1] + r[2] for r in worker_results),
        "missing_in_browsers": sum(steps - seen for seen, _ in watched), "subscribers": len(subscriptions),
        "p50": statistics.median(latencies) if latencies else float("nan"),
        "p95": latencies[int(len(latencies) * 0.95)] if latencies else float("nan"),
        "max": latencies[-1] if latencies else float("nan"),
        "server_cpu": server_cpu / elapsed,  # cores' worth the dashboard processes used
        "client_cpu": (workers_cpu / elapsed, browsers_cpu / elapsed),
    }


def report(label: str, result: dict[str, Any], baseline: dict[str, Any] | None) -> None:
    ratio = f"  p95 ratio to SQLite {result['p95'] / baseline['p95']:5.2f}x" if baseline else ""
    verdict = "ok" if result["lost"] == 0 and result["p95"] <= TARGET_P95_MS else "MISSED"
    print(f"{label:28s} points lost {result['lost']}/{result['sent']:,}  browser steps missing {result['missing_in_browsers']}"
          f"  p50 {result['p50']:6.1f} ms  p95 {result['p95']:6.1f} ms  max {result['max']:7.1f} ms{ratio}"
          f"  [{verdict}: 0 lost, p95 <= {TARGET_P95_MS:g} ms]  dashboard CPU {result['server_cpu']:.2f} cores"
          f" (workers {result['client_cpu'][0]:.2f}, browsers {result['client_cpu'][1]:.2f})")


def fresh_postgres(admin_url: str) -> tuple[str, str]:
    import psycopg

    name = f"orpo_load_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = admin_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    return name, f"{base}/{name}"


def drop_postgres(admin_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=120.0, help="how long the workers log (default 2 minutes)")
    parser.add_argument("--workers", type=int, default=10)
    parser.add_argument("--rate", type=float, default=20.0, help="steps per second per worker")
    parser.add_argument("--browsers", type=int, default=20, help="browser subscribers, spread over the runs")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres",
                        help="an admin URL of a PostgreSQL server; a fresh database is made there and dropped")
    parser.add_argument("--only", choices=("sqlite", "postgres"), default=None)
    args = parser.parse_args()
    print(f"{args.workers} workers x {args.rate:g} steps/s x {len(METRICS)} metrics for {args.seconds:g} s, "
          f"{args.browsers} browser subscribers; metrics() call -> step complete in a browser")
    baseline = None
    if args.only != "postgres":
        with Dashboard() as dash:
            baseline = measure([dash], args)
        report("SQLite, 1 process:", baseline, None)
    if args.only != "sqlite":
        name, url = fresh_postgres(args.postgres)
        try:
            with ExitStack() as stack:
                first = stack.enter_context(Dashboard(url))  # migrates first; the second finds the schema at head
                second = stack.enter_context(Dashboard(url))
                result = measure([first, second], args)
            report("PostgreSQL, 2 processes:", result, baseline)
        finally:
            drop_postgres(args.postgres, name)


if __name__ == "__main__":
    main()
