"""Does the dashboard stay fast as a run grows? For runs of 1k, 10k, 30k, 100k and 1M steps x 14 metrics,
through the real server:

- the run page's first data request (`GET /api/runs/{id}/metrics?max_points=2000`, every metric), against
  a baseline measured in the same run: reading every raw point of the same metrics from the database;
- a browser subscribe (`/ws/runs/{id}` with the `after_step` the page sends after its first request) to its
  first frame and to the first points frame;
- with --restart: the dashboard restarted on the same database (--restarts times), then a worker of the
  largest run reconnects and sends one batch: time from the restarted dashboard answering to that batch's
  ack, and the server's peak RSS (VmHWM from /proc) over its start, that reconnect and that batch. The
  runs are written straight to the database (not streamed), so each gets the alert-engine state a
  streaming run leaves behind (AlertEngineState, saved every few seconds while it streams); with
  --no-saved-state they get none, like a run stored before those states existed (the engine is then
  rebuilt from the run's whole history).

--keep DIR keeps the database between invocations (a million steps take minutes to write): sizes
already in it are reused.

Each timing is repeated (--repeats), sizes are measured in turn, and medians print with min-max.

    python -m benchmarks.run_size [--sizes 1000,10000,30000,100000,1000000] [--repeats 5] [--restart]
        [--restarts 3] [--keep DIR] [--no-saved-state]
"""

from __future__ import annotations

import argparse
import json
import math
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

import httpx
from sqlalchemy import delete
from websockets.sync.client import connect

from benchmarks._live import Dashboard, tiny_dataset
from orpo_dash.diagnostics import AlertEngine
from orpo_dash.metric_names import TRAIN_METRICS
from orpo_dash.protocol import hello
from server.db import make_engine, make_session_factory
from server.models import AlertEngineState, Run
from server.services.metrics import _raw, points_after_each
from server.services.rollups import BUCKET_WIDTH, FANOUT, LEVELS
from trainer.streaming import websocket_url


def timed(fn, repeats: int) -> list[float]:  # type: ignore[no-untyped-def]
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def shown(samples: list[float]) -> str:
    return f"{statistics.median(samples):8.1f} ms ({min(samples):.1f}-{max(samples):.1f})"


def subscribe_times(dash: Dashboard, run_id: int, after_step: int) -> tuple[float, float]:
    url = dash.url.replace("http://", "ws://") + f"/ws/runs/{run_id}"
    with connect(url) as ws:
        start = time.perf_counter()
        ws.send(json.dumps({"type": "subscribe", "after_step": after_step}))
        first = None
        while True:
            message = json.loads(ws.recv(timeout=60))
            first = first if first is not None else (time.perf_counter() - start) * 1000
            if message["type"] == "points":
                return first, (time.perf_counter() - start) * 1000


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def reconnect_ack_ms(dash: Dashboard, run_id: int, token: str, step: int) -> float:
    start = time.perf_counter()
    with connect(websocket_url(dash.url, run_id)) as ws:
        ws.send(json.dumps(hello(token)))
        welcome = json.loads(ws.recv(timeout=600))
        seq = welcome["acked_seq"] + 1
        ws.send(json.dumps({"type": "batch", "seq": seq, "points": [[step, name, 0.5, time.time()] for name in TRAIN_METRICS]}))
        while True:
            message = json.loads(ws.recv(timeout=600))
            if message.get("type") == "ack" and message.get("seq") == seq:
                return (time.perf_counter() - start) * 1000


def value_at(step: int) -> float:
    return 1.0 / (step + 1) + (5.0 if step == 777_777 else 0.0)  # a falling curve with one spike


def populate_fast(database_url: str, run_id: int, steps: int, metrics: list[str]) -> None:
    """The run's points written straight with sqlite3 (streaming a million steps through the dashboard,
    or even chart_query.populate, takes many minutes on two shared cores), then its summaries built by
    SQL aggregation. For this data (one minimum and one maximum per bucket, no NaN) those are the rows
    RollupTracker writes: bare columns beside SQLite's min()/max() come from the row holding it, and
    the same buckets are sealed (all but the one holding the last step). Compared row for row with
    chart_query.populate (RollupTracker) at 1,000, 49,157 and 70,000 steps."""
    db = sqlite3.connect(database_url.removeprefix("sqlite:///"), isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("BEGIN")
    rows = ((step, name, value_at(step), float(step)) for name in metrics for step in range(steps))
    db.executemany(f"INSERT INTO metric_points (run_id, step, name, value, time) VALUES ({int(run_id)}, ?, ?, ?, ?)", rows)
    sealed = (steps - 1) // BUCKET_WIDTH
    columns = ("run_id, name, level, bucket, min_step, min_value, min_time, max_step, max_value, max_time, "
               "nan_step, nan_time")
    db.execute(
        f"INSERT INTO metric_rollups ({columns}) SELECT lo.run_id, lo.name, 0, lo.bucket, lo.step, lo.value, lo.time, "
        "hi.step, hi.value, hi.time, NULL, NULL FROM "
        "(SELECT run_id, name, step / :width AS bucket, step, min(value) AS value, time FROM metric_points "
        " WHERE run_id = :run AND step < :end GROUP BY name, step / :width) AS lo JOIN "
        "(SELECT name, step / :width AS bucket, step, max(value) AS value, time FROM metric_points "
        " WHERE run_id = :run AND step < :end GROUP BY name, step / :width) AS hi "
        "ON hi.name = lo.name AND hi.bucket = lo.bucket",
        {"run": run_id, "width": BUCKET_WIDTH, "end": sealed * BUCKET_WIDTH},
    )
    for level in range(1, LEVELS):
        db.execute(
            f"INSERT INTO metric_rollups ({columns}) SELECT lo.run_id, lo.name, :level, lo.bucket, lo.min_step, "
            "lo.min_value, lo.min_time, hi.max_step, hi.max_value, hi.max_time, NULL, NULL FROM "
            "(SELECT run_id, name, bucket / :fanout AS bucket, min_step, min(min_value) AS min_value, min_time "
            " FROM metric_rollups WHERE run_id = :run AND level = :below AND bucket < :end GROUP BY name, bucket / :fanout) AS lo "
            "JOIN (SELECT name, bucket / :fanout AS bucket, max_step, max(max_value) AS max_value, max_time "
            " FROM metric_rollups WHERE run_id = :run AND level = :below AND bucket < :end GROUP BY name, bucket / :fanout) AS hi "
            "ON hi.name = lo.name AND hi.bucket = lo.bucket",
            {"run": run_id, "level": level, "below": level - 1, "fanout": FANOUT,
             "end": sealed // FANOUT**level * FANOUT},
        )
    # Ingestion keeps each metric's latest value on the run; the page's request lists metrics from it.
    db.execute("UPDATE runs SET latest_metrics = ?, last_step = ? WHERE id = ?",
               (json.dumps({name: value_at(steps - 1) for name in metrics}), steps - 1, run_id))
    db.execute("COMMIT")
    db.close()


# Steps of a run's end fed through the alert engine to give it the state a streaming run saves: no
# detector looks back further (long_window), so the state has the size a whole run's would have.
ENGINE_TAIL_STEPS = 1000


def set_saved_engine_state(database_url: str, run_id: int, steps: int, metrics: list[str], *, saved: bool) -> None:
    factory = make_session_factory(make_engine(database_url))
    with factory() as session, session.begin():
        session.execute(delete(AlertEngineState).where(AlertEngineState.run_id == run_id))
        if saved:
            engine = AlertEngine()
            tail = points_after_each(session=session, run_id=run_id, names=sorted(metrics),
                                     default_after=steps - ENGINE_TAIL_STEPS - 1)
            engine.feed((step, name, math.nan if value is None else value) for step, name, value, _ in tail)
            session.add(AlertEngineState(run_id=run_id, state=json.dumps(engine.state(), separators=(",", ":")),
                                         saved_at=time.time()))
    factory.kw["bind"].dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000,30000,100000,1000000")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--baseline-repeats", type=int, default=1, help="raw reads of every point (slow at 1M steps)")
    parser.add_argument("--restart", action="store_true", help="also time a reconnect after a dashboard restart")
    parser.add_argument("--restarts", type=int, default=3, help="dashboard restarts, each followed by a reconnect")
    parser.add_argument("--no-saved-state", action="store_true", help="the largest run has no saved alert-engine state")
    parser.add_argument("--keep", type=Path, help="keep the database in this folder and reuse the sizes it has")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    metrics = list(TRAIN_METRICS)
    dataset = tiny_dataset(Path(tempfile.mkdtemp()))
    known_file = args.keep / "runs.json" if args.keep else None
    known = {int(k): tuple(v) for k, v in json.loads(known_file.read_text()).items()} if known_file and known_file.exists() else {}
    rows = []
    with Dashboard(data_dir=args.keep) as dash:
        client = httpx.Client(base_url=dash.url, timeout=300)
        runs = {}
        for size in sizes:
            if size in known:
                runs[size] = known[size]
                continue
            run_id, token = dash.register(dataset)
            started = time.perf_counter()
            populate_fast(dash.database_url, run_id, size, metrics)
            print(f"populated {size:>9,} steps x {len(metrics)} metrics in {time.perf_counter() - started:5.0f} s", flush=True)
            runs[size] = known[size] = (run_id, token)
            if known_file:
                known_file.write_text(json.dumps(known))
        factory = make_session_factory(make_engine(dash.database_url))
        for size, (run_id, _token) in runs.items():
            url = f"/api/runs/{run_id}/metrics"
            body = client.get(url, params={"max_points": 2000}).json()
            assert len(body["series"]) == len(metrics) and body["series"]["loss"]["step"][-1] >= size - 1
            page = timed(lambda: client.get(url, params={"max_points": 2000}).raise_for_status(), args.repeats)  # noqa: B023

            def raw_read() -> None:
                with factory() as session:
                    for name in metrics:
                        _raw(session, run_id, name, 0, size)  # noqa: B023

            baseline = timed(raw_read, args.baseline_repeats)
            firsts, catch_ups = zip(*(subscribe_times(dash, run_id, size - 2) for _ in range(args.repeats)), strict=True)
            rows.append((size, page, baseline, list(firsts), list(catch_ups)))
            print(f"measured {size:,} steps", flush=True)
        if args.restart:
            largest = max(runs)
            run_id, token = runs[largest]
            acks, peaks = [], []
            with factory() as session:
                next_step = (session.get(Run, run_id).last_step or largest - 1) + 1
            for _ in range(args.restarts):
                dash.__exit__(None, None, None)
                set_saved_engine_state(dash.database_url, run_id, next_step, metrics, saved=not args.no_saved_state)
                dash.__enter__()  # same data dir and database: a dashboard restart
                acks.append(reconnect_ack_ms(dash, run_id, token, next_step))
                peaks.append(peak_rss_mb(dash.process.pid))
                next_step += 1
    print(f"\n{'steps':>9}  {'first data request':>26}  {'raw read (baseline)':>26}  ratio  {'subscribe -> first frame':>26}  "
          f"{'-> first points':>26}")
    for size, page, baseline, firsts, catch_ups in rows:
        ratio = statistics.median(baseline) / statistics.median(page)
        print(f"{size:>9,}  {shown(page):>26}  {shown(baseline):>26}  {ratio:5.1f}x  {shown(firsts):>26}  {shown(catch_ups):>26}")
    print("targets: first data request <= 100 ms at every size; subscribe -> first frame <= 50 ms")
    if args.restart:
        state = "no saved alert-engine state" if args.no_saved_state else "saved alert-engine state"
        print(f"restart -> first ack of the reconnecting {largest:,}-step run ({state}), {args.restarts} restarts: "
              f"{shown(acks)} (target <= 1,000 ms); server peak RSS {statistics.median(peaks):.0f} MB "
              f"({min(peaks):.0f}-{max(peaks):.0f}) (target <= 500 MB)")


if __name__ == "__main__":
    main()
