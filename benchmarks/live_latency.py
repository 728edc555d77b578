"""How fast a logged point reaches a watching browser: worker `metrics()` call -> point on a subscribed
`/ws/runs/{id}` socket, for a run logging --rate steps/s of 15 metrics through the real client and server.

Baseline, measured at the same time on the same points: a client that polls the metrics API every
second (what most trackers' pages do). A point's latency is the arrival time minus the time the worker
stamped on it in `metrics()` (same machine, same clock); a step's latency is that of its last point.

Target: p95 <= 250 ms for the websocket at 10 steps/s.

    python benchmarks/live_latency.py [--seconds 20] [--rate 10]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx
from websockets.sync.client import connect

from benchmarks._live import Dashboard, tiny_dataset
from trainer.streaming import StreamingReporter

METRICS = [f"metric_{i}" for i in range(15)]


def watch_websocket(url: str, run_id: int, steps: int, arrivals: dict[int, float], ready: threading.Event) -> None:
    """A browser: subscribe, then note when each step's last point arrives."""
    ws_url = url.replace("http://", "ws://") + f"/ws/runs/{run_id}"
    seen: dict[int, int] = {}
    with connect(ws_url, max_size=None) as ws:
        ws.send(json.dumps({"type": "subscribe", "after_step": -1}))
        ready.set()
        while len(arrivals) < steps:
            message = json.loads(ws.recv(timeout=30))
            now = time.time()
            if message["type"] != "points":
                continue
            for step, _name, _value, _when in message["points"]:
                seen[step] = seen.get(step, 0) + 1
                if seen[step] == len(METRICS):
                    arrivals[step] = now


def poll_every_second(url: str, run_id: int, steps: int, arrivals: dict[int, float], done: threading.Event) -> None:
    """The polling baseline: ask for new points of every metric once a second."""
    last = -1
    with httpx.Client(base_url=url, timeout=10) as client:
        while len(arrivals) < steps and not done.is_set():
            time.sleep(1.0)
            body = client.get(f"/api/runs/{run_id}/metrics", params={"min_step": last + 1, "max_points": 20000}).json()
            now = time.time()
            counts: dict[int, int] = {}
            for series in body["series"].values():
                for step in series["step"]:
                    counts[step] = counts.get(step, 0) + 1
            for step, count in counts.items():
                if count == len(METRICS) and step not in arrivals:
                    arrivals[step] = now
            last = max(arrivals, default=last)


def percentiles(latencies_ms: list[float]) -> tuple[float, float, float]:
    ordered = sorted(latencies_ms)
    return statistics.median(ordered), ordered[int(len(ordered) * 0.95)], ordered[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rate", type=float, default=10.0, help="logged steps per second")
    args = parser.parse_args()
    steps = int(args.seconds * args.rate)
    folder = Path(tempfile.mkdtemp(prefix="orpo-latency-"))

    with Dashboard() as dash:
        run_id, token = dash.register(tiny_dataset(folder))
        pushed: dict[int, float] = {}
        polled: dict[int, float] = {}
        ready, done = threading.Event(), threading.Event()
        watchers = [
            threading.Thread(target=watch_websocket, args=(dash.url, run_id, steps, pushed, ready)),
            threading.Thread(target=poll_every_second, args=(dash.url, run_id, steps, polled, done)),
        ]
        for watcher in watchers:
            watcher.start()
        ready.wait(10)
        reporter = StreamingReporter(dash.url, run_id, token, spill_path=folder / "spill.jsonl")
        assert reporter.connected.wait(10)
        logged: dict[int, float] = {}
        start = time.perf_counter()
        for step in range(steps):
            time.sleep(max(0.0, start + step / args.rate - time.perf_counter()))  # the training step
            logged[step] = time.time()
            reporter.metrics(step, {name: step * 0.01 + i for i, name in enumerate(METRICS)})
        reporter.close(timeout=60)
        watchers[0].join(60)
        watchers[1].join(5)
        done.set()
        watchers[1].join(10)

    # logged[step] is taken just before metrics() stamps the points: the two differ by microseconds.
    ws_p50, ws_p95, ws_max = percentiles([(pushed[s] - logged[s]) * 1000 for s in logged if s in pushed])
    poll_p50, poll_p95, poll_max = percentiles([(polled[s] - logged[s]) * 1000 for s in logged if s in polled])
    print(f"{steps} steps of {len(METRICS)} metrics at {args.rate:g} steps/s; metrics() call -> step visible in the client")
    print(f"baseline (poll the metrics API every 1 s): p50 {poll_p50:7.1f} ms  p95 {poll_p95:7.1f} ms  max {poll_max:7.1f} ms"
          f"  ({len(polled)}/{steps} steps seen)")
    print(f"browser websocket (/ws/runs/{{id}}):         p50 {ws_p50:7.1f} ms  p95 {ws_p95:7.1f} ms  max {ws_max:7.1f} ms"
          f"  ({len(pushed)}/{steps} steps seen)  ratio p95 {poll_p95 / ws_p95:5.1f}x  target p95 <= 250 ms")


if __name__ == "__main__":
    main()
