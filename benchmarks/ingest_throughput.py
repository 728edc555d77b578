"""Sustained ingestion through the real worker client and the real server, read back afterwards.

Baselines, measured in the same run:
- the naive pattern other trackers use (one synchronous request per step, like MLflow's per-step
  log_batch): one websocket round-trip per step;
- the raw limit of the storage: plain `sqlite3` executemany of the same rows into the same migrated
  WAL table, with a commit per batch of the size the client sends;
- with `--database-url`, the same streaming run against SQLite and that database, in alternating rounds.
Every run reads back the points it sent from the database (all of them, or the benchmark fails).

    python -m benchmarks.ingest_throughput [--points 600000] [--workers 10] [--rounds 3]
        [--database-url postgresql+psycopg://postgres@127.0.0.1:5432/DB]

With a PostgreSQL URL, each round's dashboard gets a new database on that server (made and dropped
here), as SQLite gets a new file: both start empty.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import create_engine, text
from websockets.sync.client import connect

from benchmarks._live import REPO_ROOT, Dashboard, tiny_dataset
from benchmarks.load import drop_postgres, fresh_postgres
from trainer.streaming import StreamingReporter, websocket_url

METRICS = [f"metric_{i}" for i in range(15)]


def stream(url: str, run_id: int, token: str, points: int, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    reporter = StreamingReporter(url, run_id, token)
    steps = points // len(METRICS)
    start = time.perf_counter()
    for step in range(steps):
        reporter.metrics(step, {name: step * 0.001 for name in METRICS})
    reporter.close(timeout=600)
    out.put((steps * len(METRICS), time.perf_counter() - start, reporter.undelivered_batches))


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


def stored_points(database_url: str, run_ids: list[int]) -> int:
    engine = create_engine(database_url)
    with engine.connect() as connection:
        count = connection.execute(
            text("SELECT count(*) FROM metric_points WHERE run_id IN (" + ",".join(map(str, run_ids)) + ")")
        ).scalar_one()
    engine.dispose()
    return int(count)


def run_workers(dash: Dashboard, dataset: Path, workers: int, points_each: int) -> float:
    out: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
    procs, run_ids = [], []
    for _ in range(workers):
        run_id, token = dash.register(dataset)
        run_ids.append(run_id)
        procs.append(multiprocessing.Process(target=stream, args=(dash.url, run_id, token, points_each, out)))
    start = time.perf_counter()
    for proc in procs:
        proc.start()
    results = [out.get(timeout=900) for _ in procs]
    elapsed = time.perf_counter() - start
    for proc in procs:
        proc.join()
    assert all(spilled == 0 for _, _, spilled in results), "some points were not delivered"
    sent = sum(n for n, _, _ in results)
    stored = stored_points(dash.database_url, run_ids)
    assert stored == sent, f"sent {sent:,} points but {stored:,} are stored"
    return sent / elapsed


def raw_sqlite_limit(points: int, batch_points: int) -> float:
    """Plain sqlite3 executemany of the same rows into the same migrated table (WAL, as the server sets it)."""
    folder = Path(tempfile.mkdtemp(prefix="orpo-bench-raw-"))
    path = folder / "raw.sqlite3"
    subprocess.run([sys.executable, "-m", "orpo_dash.cli", "migrate", "--database-url", f"sqlite:///{path}"],
                   cwd=REPO_ROOT, check=True, capture_output=True)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("INSERT INTO runs (name, status, config, tags, worker_token_hash, created_at, last_seq, stop_requested,"
               " latest_metrics) VALUES ('raw', 'running', '{}', '[]', '', '2026-01-01', 0, 0, '{}')")
    steps = points // len(METRICS)
    per_batch = max(1, batch_points // len(METRICS))
    start = time.perf_counter()
    for first in range(0, steps, per_batch):
        now = time.time()
        rows = [(1, name, step, step * 0.001, now) for step in range(first, min(steps, first + per_batch)) for name in METRICS]
        db.execute("BEGIN")
        db.executemany("INSERT OR IGNORE INTO metric_points (run_id, name, step, value, time) VALUES (?, ?, ?, ?, ?)", rows)
        db.execute("COMMIT")
    elapsed = time.perf_counter() - start
    stored = db.execute("SELECT count(*) FROM metric_points").fetchone()[0]
    assert stored == steps * len(METRICS), stored
    db.close()
    return stored / elapsed


@contextlib.contextmanager
def fresh_database(url: str | None) -> Iterator[str | None]:
    """Every dashboard of the benchmark starts on an empty database, as SQLite does (a new file each
    time): a PostgreSQL URL stands for its server, where a new database is made for the round and
    dropped after. (On the given database itself, PostgreSQL was measured inserting into every earlier
    run's points, 24M rows and 3 GB after a day of benchmarks, against an empty SQLite file.)"""
    if url is None or not url.startswith("postgresql"):
        yield url
        return
    admin_url = url.replace("postgresql+psycopg://", "postgresql://", 1)
    name, fresh_url = fresh_postgres(admin_url)
    try:
        yield fresh_url
    finally:
        drop_postgres(admin_url, name)


def spread(values: list[float]) -> str:
    return f"median {statistics.median(values):10,.0f}  (min {min(values):,.0f}, max {max(values):,.0f}, n={len(values)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=600_000, help="points for the single-worker run")
    parser.add_argument("--workers", type=int, default=10)
    parser.add_argument("--baseline-steps", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved repetitions of every measurement")
    parser.add_argument("--database-url", help="also measure this database (e.g. PostgreSQL) beside SQLite")
    parser.add_argument("--batch-points", type=int, default=5000, help="rows per commit for the raw sqlite3 limit")
    args = parser.parse_args()

    dataset = tiny_dataset(Path(tempfile.mkdtemp()))
    backends = {"sqlite": None} | ({"other": args.database_url} if args.database_url else {})
    results: dict[str, list[float]] = {}
    peak_rss: dict[str, list[float]] = {}

    def record(label: str, value: float) -> None:
        # Printed as measured too: on a busy machine a run can take long, and a partial result still tells.
        results.setdefault(label, []).append(value)
        print(f"  round {len(results[label])}: {label:32} {value:10,.0f} points/s", flush=True)

    for _ in range(args.rounds):
        record("raw sqlite3 executemany", raw_sqlite_limit(args.points, args.batch_points))
        for label, url in backends.items():
            with fresh_database(url) as database_url, Dashboard(database_url) as dash:
                run_id, token = dash.register(dataset)
                record(f"{label}: baseline", naive_per_step(dash.url, run_id, token, args.baseline_steps))
                record(f"{label}: 1 worker", run_workers(dash, dataset, 1, args.points))
                record(f"{label}: {args.workers} workers", run_workers(dash, dataset, args.workers, args.points // args.workers))
                peak_rss.setdefault(label, []).append(dash.peak_rss_mb())

    print(f"points/s over {args.rounds} interleaved rounds ({args.points:,} points per run, every one read back)")
    for label, values in results.items():
        print(f"  {label:32} {spread(values)}")
    for label, values in peak_rss.items():
        print(f"  {label}: server peak RSS {statistics.median(values):,.0f} MB (max {max(values):,.0f})")
    raw = statistics.median(results["raw sqlite3 executemany"])
    for label in backends:
        base = statistics.median(results[f"{label}: baseline"])
        for workers in (1, args.workers):
            got = statistics.median(results[f"{label}: {workers} worker{'s' if workers > 1 else ''}"])
            print(f"  {label}, {workers:2} worker(s): {got / base:5.1f}x the synchronous baseline, "
                  f"{got / raw:4.2f}x raw sqlite3 (target >= 0.5 for SQLite)")
    if args.database_url:
        for workers in (1, args.workers):
            key = f"{workers} worker{'s' if workers > 1 else ''}"
            ratios = [o / s for o, s in zip(results[f"other: {key}"], results[f"sqlite: {key}"], strict=True)]
            print(f"  other / sqlite, {workers:2} worker(s): per-round ratios "
                  + ", ".join(f"{r:.2f}" for r in ratios) + f"  median {statistics.median(ratios):.2f} (target >= 0.8)")


if __name__ == "__main__":
    main()
