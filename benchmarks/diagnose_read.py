"""Reading a long metrics file for `orpo-dash diagnose`: CPU time and peak memory against baselines.

    python -m benchmarks.diagnose_read [--steps 100000 1000000]

For each size, a JSONL file of that many steps x 10 metrics (our trainer's --metrics-out) is written to a
temporary folder, then each measurement runs in a fresh child process (so peaks do not mix):
- baseline CPU: json.loads of every line and nothing else;
- baseline memory: the largest series as a float64 array (steps x 8 bytes);
- stream: MetricsStream, every (step, name, value) point `diagnose` feeds the alert engine;
- load: load_metrics_file, every series as int64/float64 arrays.
Peak memory is the child's peak RSS minus its RSS before reading (interpreter and numpy already loaded).
The alert engine's own cost is not part of reading: benchmarks/alerts/engine_speed.py measures it.
Targets (issue 16): memory <= 2x the largest series, 1M steps in <= 10 s of CPU.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

METRICS = ("loss", "nll_loss", "or_loss", "log_odds_ratio", "accuracy", "logps_chosen", "logps_rejected", "margin",
           "learning_rate", "grad_norm")


def write_file(path: Path, steps: int) -> None:
    with open(path, "w") as fh:
        for s in range(1, steps + 1):
            row = {"step": s, **{name: round(1.0 + i / 7 + 1 / s, 6) for i, name in enumerate(METRICS)}}
            fh.write(json.dumps(row) + "\n")


def _rss_kib() -> int:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:"))


def measure(kind: str, path: str) -> None:
    """Child process: run one reading, print {"cpu_s", "peak_mib"} as JSON."""
    import numpy as np

    from orpo_dash.diagnostics import load_metrics_file
    from orpo_dash.diagnostics.loading import MetricsStream

    np.zeros(1)
    before = _rss_kib()
    cpu = time.process_time()
    if kind == "json.loads":
        with open(path) as fh:
            for line in fh:
                json.loads(line)
    elif kind == "stream":
        for _ in MetricsStream(path).points():
            pass
    elif kind == "load":
        load_metrics_file(path)
    cpu = time.process_time() - cpu
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(json.dumps({"cpu_s": cpu, "peak_mib": max(0, peak - before) / 1024}))


def run_child(kind: str, path: Path) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-m", "benchmarks.diagnose_read", "--child", kind, str(path)],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        measure(*args.child)
        return
    with tempfile.TemporaryDirectory() as tmp:
        for steps in args.steps:
            path = Path(tmp) / f"m{steps}.jsonl"
            write_file(path, steps)
            largest = steps * 8 / 2**20
            base = run_child("json.loads", path)
            print(f"{steps:,} steps x {len(METRICS)} metrics, file {path.stat().st_size / 2**20:.0f} MiB, "
                  f"largest series as float64 {largest:.1f} MiB")
            print(f"  {'baseline json.loads':22s} cpu {base['cpu_s']:6.2f} s   peak +{base['peak_mib']:7.1f} MiB")
            for kind in ("stream", "load"):
                r = run_child(kind, path)
                print(f"  {kind:22s} cpu {r['cpu_s']:6.2f} s ({r['cpu_s'] / base['cpu_s']:4.2f}x json.loads)   "
                      f"peak +{r['peak_mib']:7.1f} MiB ({r['peak_mib'] / largest:5.2f}x largest series)   "
                      f"target cpu <= {10 * steps / 1_000_000:g} s, memory <= 2x")


if __name__ == "__main__":
    main()
