"""Where ingestion time goes: the server's per-batch path, in process, under cProfile.

Not a benchmark (ingest_throughput.py measures the real server); a tool to find the cost. Feeds
--batches frames of 5,000 points (the client's batch size) through exactly what the worker socket and
the writer do with them: orjson.loads of the frame (as ws_worker does), apply_batch in coalesced transactions (parse, insert,
rollups, latest metrics, alert engine), commit, then the points fan-out message. Also times the client
side's encoding of a batch. --no-alerts stubs the alert engine out to see the rest. The garbage
collector is set as `orpo-dash serve` sets it (server/gc_tuning.py) unless --default-gc.

    python -m benchmarks.profile_ingest [--batches 60] [--no-alerts] [--top 25] [--database-url URL]
        [--default-gc | --gen0 N] [--no-profile]
"""

from __future__ import annotations

import argparse
import cProfile
import math
import pstats
import resource
import tempfile
import time
from pathlib import Path

import orjson

from orpo_dash.run_config import RunConfig
from server.db import make_engine, make_session_factory
from server.gc_tuning import GEN0_THRESHOLD, tune_gc_for_serving
from server.migrate import upgrade_to_head
from server.services import ingest
from server.services.ingest import IngestState, apply_batch
from server.services.runs import create_run
from trainer.streaming import MAX_BATCH_POINTS, _dumps

METRICS = [f"metric_{i}" for i in range(15)]


class NoAlerts:
    def feed(self, points):  # type: ignore[no-untyped-def]
        for _ in points:
            pass
        return []

    def flush(self):  # type: ignore[no-untyped-def]
        return []


def frames(batches: int) -> list[str]:
    out, step = [], 0
    for seq in range(1, batches + 1):
        points = []
        while len(points) < MAX_BATCH_POINTS:
            now = time.time()
            points.extend([step, name, step * 0.001 + i, now] for i, name in enumerate(METRICS))
            step += 1
        out.append(_dumps({"type": "batch", "seq": seq, "points": points}))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--no-alerts", action="store_true")
    parser.add_argument("--coalesce", type=int, default=4, help="batches per transaction (the writer coalesces queued ones)")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--database-url", help="an empty database to profile instead of a new SQLite file")
    parser.add_argument("--default-gc", action="store_true", help="keep CPython's collector settings (not the server's)")
    parser.add_argument("--gen0", type=int, default=GEN0_THRESHOLD, help="the server's young-generation threshold to try")
    parser.add_argument("--no-profile", action="store_true", help="time only, without cProfile's overhead")
    args = parser.parse_args()
    if args.no_alerts:
        ingest.AlertEngine = lambda *a, **k: NoAlerts()  # type: ignore[assignment,misc]

    url = args.database_url or f"sqlite:///{Path(tempfile.mkdtemp()) / 'profile.sqlite3'}"
    upgrade_to_head(url)
    factory = make_session_factory(make_engine(url))
    with factory() as session, session.begin():
        run, _ = create_run(session=session, config=RunConfig(dataset="x/y"), name=None, runs_dir=(folder := Path(tempfile.mkdtemp())),
                            output_root=folder)
        run.status = "running"
        run_id = run.id
    wire = frames(args.batches)
    state = IngestState()

    start = time.perf_counter()
    encode_start = time.perf_counter()
    for frame in wire[:10]:
        message = orjson.loads(frame)
        _dumps({"type": "batch", "seq": 1, "points": [[s, n, v if math.isfinite(v) else None, t] for s, n, v, t in message["points"]]})
    encode_ms = (time.perf_counter() - encode_start) / 10 * 1000

    if not args.default_gc:
        tune_gc_for_serving(args.gen0)
    profiler = cProfile.Profile()
    start, cpu_start = time.perf_counter(), time.process_time()
    if not args.no_profile:
        profiler.enable()
    for first in range(0, len(wire), args.coalesce):
        with factory() as session, session.begin():
            announcements = [apply_batch(session=session, run_id=run_id, message=orjson.loads(frame), state=state)
                             for frame in wire[first:first + args.coalesce]]
        for item in announcements:
            assert item is not None
            _ = [[s, n, v if math.isfinite(v) else None, t] for s, n, v, t in item.points]
    profiler.disable()
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    points = args.batches * MAX_BATCH_POINTS
    collector = "default gc" if args.default_gc else f"server gc (gen0 {args.gen0:,})"
    print(f"server path: {points:,} points in {elapsed:.2f} s {'' if args.no_profile else 'under cProfile '}"
          f"= {points / elapsed:,.0f} points/s ({'alert engine stubbed' if args.no_alerts else 'with the alert engine'}, "
          f"{collector}); CPU {cpu / points * 1e6:.1f} us per point (less sensitive to a busy machine)")
    print(f"peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB")
    print(f"client: decode+encode of one 5,000-point batch: {encode_ms:.2f} ms")
    if not args.no_profile:
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(args.top)


if __name__ == "__main__":
    main()
