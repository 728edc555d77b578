"""`orpo-dash import` of a 100,000-step x 15-metric run (target <= 10 s), as a TRL trainer_state.json, as
our --metrics-out JSONL, as a W&B history CSV, as an MLflow mlruns folder and that folder zipped (as the Import
page takes it), and (with wandb installed; writing it takes about a minute) as an offline W&B run's .wandb file: wall time of the command, and the dashboard's own CPU time for it (read from
/proc: the server process and its descendants, i.e. the judge process, see server/services/import_judge.py), which
is what the wall time would be on one idle core (the benchmark machine's 2 cores are shared). Each run is read
back through the dashboard's CSV export afterwards: 15 x 100,000 points, or the benchmark fails.

Then the critical path, measured in this process on the same files: the CPU seconds of reading, of judging
(points + alert engine, what the judge process does) and of storing (into a fresh SQLite file, what the
writer thread does); judged beside the store, an import costs read + max(judge, store) on two idle cores
instead of read + judge + store.

    python -m benchmarks.import_speed [--files DIR] [--only trainer_state.json run-<id>.wandb ...] [--no-critical-path]

--files reuses (or first writes) the files in DIR, so that runs to compare read the same bytes."""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
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
    csv_export = folder / "wandb_export.csv"  # the W&B UI's history export: its own columns, then train/<TRL key>
    with open(csv_export, "w") as fh:
        fh.write(",".join(["_step", "_runtime", "_timestamp", "train/global_step", *("train/" + k for k in TRL)]) + "\n")
        for s in range(1, STEPS + 1):
            fh.write(",".join(map(str, [s - 1, s * 0.1, 1.7e9 + s * 0.1, s, *(_value(s, i) for i in range(len(TRL)))])) + "\n")
    run = folder / "mlruns" / "1" / "0123456789abcdef"  # an MLflow file store, as MLflowCallback fills it
    (run / "params").mkdir(parents=True)
    (run / "meta.yaml").write_text("run_id: 0123456789abcdef\nrun_name: bench\nexperiment_id: '1'\nstatus: 3\n"
                                   "start_time: 1700000000000\n")
    for i, key in enumerate(TRL):
        (run / "metrics" / key).parent.mkdir(parents=True, exist_ok=True)
        (run / "metrics" / key).write_text("".join(f"{1700000000000 + s} {_value(s, i)} {s}\n" for s in range(1, STEPS + 1)))
    # The same folder as the Import page takes it: one archive (orpo_dash/import_archive.py).
    archive = Path(shutil.make_archive(str(folder / "mlruns"), "zip", folder, "mlruns"))
    files = {"trainer_state.json": state, "metrics.jsonl": jsonl, "wandb_export.csv": csv_export, "mlruns/": folder / "mlruns",
             "mlruns.zip": archive}
    try:
        import wandb  # noqa: F401
    except ImportError:
        return files
    code = ("import math, wandb\n"
            f"run = wandb.init(dir={str(folder)!r}, mode='offline', project='bench')\n"
            f"for s in range(1, {STEPS} + 1):\n"
            f"    run.log({{**{{'train/' + k: round(-abs(math.sin(s * 1e-3 + i)) - 1e-3 * i, 6) for i, k in enumerate({TRL!r})}},"
            " 'train/global_step': s})\n"
            "run.finish()\n")
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "WANDB_SILENT": "true",
                                                                  "WANDB_ERROR_REPORTING": "false"})
    files["run-<id>.wandb"] = folder / "wandb"
    return files


def _own_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # utime + stime, and the same of its children it has waited for (the wandb reader it starts for a .wandb file)
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def _descendants(pid: int) -> list[int]:
    """Its live children, theirs, and so on (the forkserver and the judge process it forks)."""
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                children = [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
            found += children
            todo += children
    return found


def _cpu_seconds(pid: int) -> tuple[float, float]:
    """The dashboard's CPU seconds: its own (with the children it reaped), and its live descendants'."""
    children = 0.0
    for child in _descendants(pid):
        try:
            children += _own_cpu(child)
        except OSError:  # exited meanwhile
            continue
    return _own_cpu(pid), children


def critical_path(path: Path) -> str:
    """CPU seconds of read, judge and store of one file, each alone in this process (see the module doc)."""
    from orpo_dash import import_mlflow
    from orpo_dash.import_archive import is_archive, read_archive
    from orpo_dash.run_import import find_run_file, read_run
    from server.db import make_engine, make_session_factory
    from server.migrate import upgrade_to_head
    from server.services import imports
    from server.services.import_judge import judge_run
    from server.services.ingest import IngestState

    started = time.process_time()
    if runs := import_mlflow.find_run_folders(path):  # what `orpo-dash import mlruns/` reads and uploads
        with tempfile.TemporaryDirectory() as scratch:
            document = Path(scratch) / "mlflow-run.json"
            import_mlflow.write_document(import_mlflow.read_run_folder(runs[0]), document)
            imported = read_run(document)
    elif is_archive(path.name):
        with tempfile.TemporaryDirectory() as scratch:
            imported = read_archive(path, display_name=path.name, into=Path(scratch) / "unpacked", limit_bytes=2**32)
    else:
        file = find_run_file(path)
        imported = read_run(file, display_name=file.name)
    read = time.process_time() - started
    started = time.process_time()
    changes = judge_run(imported)
    judge = time.process_time() - started
    folder = Path(tempfile.mkdtemp(prefix="orpo-import-bench-db-"))
    url = f"sqlite:///{folder / 'store.sqlite3'}"
    upgrade_to_head(url)
    engine = make_engine(url)
    started = time.process_time()
    with make_session_factory(engine)() as session, session.begin():
        imports.store(session=session, imported=imported, judgement=lambda: changes, name=None, created_by=None,
                      state=IngestState())
    store = time.process_time() - started
    engine.dispose()
    shutil.rmtree(folder)
    return (f"read {read:4.1f} + judge {judge:4.1f} + store {store:4.1f} CPU s: sequential {read + judge + store:5.1f}, "
            f"judge beside store {read + max(judge, store):5.1f} ({len(changes)} alert changes)")


def _read_back(url: str, stdout: str) -> str:
    """What the dashboard stored, read back through its CSV export (step,name,value,time): every step of every
    metric, or the benchmark fails."""
    from collections import Counter

    import httpx

    run_id = int(stdout.strip().rsplit("/", 1)[1])
    counts: Counter[str] = Counter()
    with httpx.stream("GET", f"{url}/api/runs/{run_id}/export", params={"format": "csv"}, timeout=300) as response:
        lines = response.iter_lines()
        next(lines)  # the header
        counts.update(line.split(",", 2)[1] for line in lines if line)
    if len(counts) != 15 or set(counts.values()) != {STEPS}:
        raise SystemExit(f"read back run {run_id}: points per metric {dict(counts)}")
    return f"read back 15 x {STEPS:,} points"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=Path, help="write the files here once, and reuse them")
    parser.add_argument("--only", nargs="*", help="import only these (e.g. trainer_state.json run-<id>.wandb)")
    parser.add_argument("--no-critical-path", action="store_true", help="skip the in-process read/judge/store timing")
    args = parser.parse_args()
    folder = args.files or Path(tempfile.mkdtemp(prefix="orpo-import-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    done_mark = folder / "written.json"
    if done_mark.exists():
        files = {label: Path(p) for label, p in json.loads(done_mark.read_text()).items()}
    else:
        files = write_files(folder)
        done_mark.write_text(json.dumps({label: str(p) for label, p in files.items()}))
    if args.only:
        files = {label: path for label, path in files.items() if label in args.only}
    print(f"import of {STEPS:,} steps x 15 metrics (target <= 10 s); load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} CPUs")
    with Dashboard() as dashboard:
        for label, path in files.items():
            own, children = _cpu_seconds(dashboard.process.pid)
            load = os.getloadavg()[0]
            started = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "orpo_dash.cli", "import", str(path), "--server", dashboard.url],
                                  cwd=REPO_ROOT, capture_output=True, text=True)
            wall = time.perf_counter() - started
            own_after, children_after = _cpu_seconds(dashboard.process.pid)
            readback = _read_back(dashboard.url, done.stdout) if done.returncode == 0 else ""  # after the CPU reading
            own, children = own_after - own, children_after - children
            size = sum(p.stat().st_size for p in ([path] if path.is_file() else path.rglob("*")) if p.is_file()) / 1e6
            print(f"  {label:20s} {size:6.1f} MB  wall {wall:6.1f} s   dashboard CPU {own + children:6.1f} s "
                  f"(server {own:4.1f} + judge process {children:4.1f})   load {load:.1f}   "
                  f"{readback if done.returncode == 0 else 'FAILED: ' + done.stderr[-300:]}")
    if not args.no_critical_path:
        print("critical path, CPU seconds in this process:")
        for label, path in files.items():
            print(f"  {label:20s} {critical_path(path)}")


if __name__ == "__main__":
    main()
