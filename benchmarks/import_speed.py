"""`orpo-dash import` of a 100,000-step x 15-metric run (target <= 10 s), as a TRL trainer_state.json and as
our --metrics-out JSONL: wall time of the command, and the dashboard's own CPU time for it (read from
/proc), which is what the wall time would be on an idle machine (the benchmark machine's 2 cores are shared)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._live import REPO_ROOT, Dashboard

STEPS = 100_000
OURS = ("loss", "nll_loss", "or_loss", "log_odds_ratio", "accuracy", "logps_chosen", "logps_rejected", "margin",
        "ppl_chosen", "learning_rate", "epoch", "grad_norm", "tokens_per_sec", "step_time", "eval/loss")
TRL = ("loss", "nll_loss", "log_odds_ratio", "log_odds_chosen", "rewards/accuracies", "logps/chosen", "logps/rejected",
       "rewards/chosen", "rewards/rejected", "rewards/margins", "logits/chosen", "logits/rejected", "learning_rate",
       "epoch", "grad_norm")


def _value(step: int, i: int) -> float:
    return round(-abs(math.sin(step * 1e-3 + i)) - 1e-3 * i, 6)


def write_files(folder: Path) -> dict[str, Path]:
    history = [{**{k: _value(s, i) for i, k in enumerate(TRL)}, "step": s} for s in range(1, STEPS + 1)]
    state = folder / "trainer_state.json"
    state.write_text(json.dumps({"global_step": STEPS, "max_steps": STEPS, "log_history": history}, indent=2))
    jsonl = folder / "metrics.jsonl"
    with open(jsonl, "w") as fh:
        for s in range(1, STEPS + 1):
            fh.write(json.dumps({"step": s, **{k: abs(_value(s, i)) for i, k in enumerate(OURS)}}) + "\n")
    return {"trainer_state.json": state, "metrics.jsonl": jsonl}


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def main() -> None:
    folder = Path(tempfile.mkdtemp(prefix="orpo-import-bench-"))
    files = write_files(folder)
    print(f"import of {STEPS:,} steps x 15 metrics (target <= 10 s); load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} CPUs")
    with Dashboard() as dashboard:
        for label, path in files.items():
            cpu = _cpu_seconds(dashboard.process.pid)
            started = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "orpo_dash.cli", "import", str(path), "--server", dashboard.url],
                                  cwd=REPO_ROOT, capture_output=True, text=True)
            wall = time.perf_counter() - started
            cpu = _cpu_seconds(dashboard.process.pid) - cpu
            size = path.stat().st_size / 1e6
            print(f"  {label:20s} {size:6.1f} MB  wall {wall:6.1f} s   dashboard CPU {cpu:6.1f} s   "
                  f"{'ok' if done.returncode == 0 else 'FAILED: ' + done.stderr[-300:]}")


if __name__ == "__main__":
    main()
