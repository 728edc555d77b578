"""Score the detectors on the labelled trace collections: the tuning set and two held-out sets, apart.

The tuning set (traces/) is what the thresholds were derived and tuned on; the held-out set (heldout/,
see make_heldout_traces.py) was labelled before any detector change and is never tuned on: its
numbers are the estimate of how the detectors do on runs they have not seen. The second held-out
set (heldout2/, make_heldout2_traces.py and trl_runs.py --set heldout2) was made and labelled after
the first had shown a miss, before the detector change made for it: runs that change never saw.
The third (heldout3/, make_heldout3_traces.py, labelled by label_heldout3.py) holds the labelled
positives of over_penalization and non_finite that the first two lack, with healthy runs beside them.

Per kind: recall (labelled (trace, kind) pairs where an alert of that kind opened), false alarms
(alerts of that kind on healthy traces, i.e. labelled []), spurious (that kind on a pitfall trace not
labelled with it: reported, not a target) and the median detection delay, step opened - onset
(an alert opening before the labelled onset counts as delay 0).

Also, for every lr blow-up inside the first 20 steps (a `loss_rising` label with onset <= 20), the
delay of its alert: the goal is 10 steps at most.

    python benchmarks/alerts/score.py [--set tuning|heldout|heldout2|heldout3|all] [--threshold KEY=VALUE ...] [--verbose]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from orpo_dash.diagnostics import KINDS, diagnose, load_metrics_file

TRACES = Path(__file__).parent / "traces"
HELDOUT = Path(__file__).parent / "heldout"
HELDOUT2 = Path(__file__).parent / "heldout2"
HELDOUT3 = Path(__file__).parent / "heldout3"
EARLY = 20  # an lr blow-up with its onset at or before this step...
EARLY_DELAY = 10  # ...must be caught within this many steps


def first_openings(path: Path, th: dict[str, float]) -> dict[str, int]:
    """Kind -> step at which an alert of that kind first opened on the trace at `path`."""
    opened: dict[str, int] = {}
    for a in diagnose(load_metrics_file(path), th):
        if a.state == "open":
            opened.setdefault(a.kind, a.step)
    return opened


def print_table(results: dict[str, tuple[dict[str, int], dict[str, int]]], *, verbose: bool = False) -> None:
    """The score table for trace name -> (expected kind -> onset, opened kind -> step)."""
    hits = {k: 0 for k in KINDS}
    wanted = {k: 0 for k in KINDS}
    false = {k: 0 for k in KINDS}
    spurious = {k: 0 for k in KINDS}
    delays: dict[str, list[int]] = {k: [] for k in KINDS}
    healthy = sum(1 for expect, _ in results.values() if not expect)
    for name, (expect, opened) in sorted(results.items()):
        for kind, onset in expect.items():
            wanted[kind] += 1
            if kind in opened:
                hits[kind] += 1
                delays[kind].append(max(0, opened[kind] - onset))
        for kind in opened:
            if not expect:
                false[kind] += 1
            elif kind not in expect:
                spurious[kind] += 1
        if verbose or (not expect and opened) or any(k not in opened for k in expect):
            print(f"  {name:32s} expected {expect} opened {opened}")
    print(f"{len(results)} traces ({healthy} healthy)")
    early = [(name, onset, opened.get("loss_rising")) for name, (expect, opened) in sorted(results.items())
             for kind, onset in expect.items() if kind == "loss_rising" and onset <= EARLY]
    print(f"{'kind':24s} {'recall':>12s} {'false alarms':>14s} {'spurious':>9s} {'median delay':>13s}")
    for k in KINDS:
        rec = f"{hits[k]}/{wanted[k]} {hits[k] / wanted[k]:.2f}" if wanted[k] else "-"
        med = f"{np.median(delays[k]):.0f}" if delays[k] else "-"
        print(f"{k:24s} {rec:>12s} {false[k]:>9d}/{healthy:<4d} {spurious[k]:>9d} {med:>13s}")
    if early:
        caught = [o - on for _, on, o in early if o is not None and o - on <= EARLY_DELAY]
        delays = ", ".join(f"{n}: {'missed' if o is None else max(0, o - on)}" for n, on, o in early)
        print(f"lr blow-ups inside the first {EARLY} steps caught within {EARLY_DELAY} steps: "
              f"{len(caught)}/{len(early)} ({delays})")


def trace_file(folder: Path, name: str) -> Path:
    """Our JSONL trace, or (held-out TRL runs) TRL's own trainer_state.json, read by diagnose's loader."""
    jsonl = folder / f"{name}.jsonl.gz"
    return jsonl if jsonl.exists() else folder / f"{name}.json.gz"


def score_set(folder: Path, th: dict[str, float]) -> dict[str, tuple[dict[str, int], dict[str, int]]]:
    labels = json.loads((folder / "labels.json").read_text())
    return {name: ({x["kind"]: x["onset_step"] for x in lab}, first_openings(trace_file(folder, name), th))
            for name, lab in labels.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--set", choices=("tuning", "heldout", "heldout2", "heldout3", "all"), default="all")
    ap.add_argument("--threshold", action="append", default=[])
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()
    th = {k: float(v) for k, v in (s.split("=") for s in args.threshold)}
    for title, folder in (("tuning", TRACES), ("heldout", HELDOUT), ("heldout2", HELDOUT2),
                          ("heldout3", HELDOUT3)):
        if args.set in (title, "all"):
            print(f"== {title} set ({folder.name}/)")
            if not (folder / "labels.json").exists():
                print("  no labels.json yet: label it first (label_added.py), then score")
                continue
            print_table(score_set(folder, th), verbose=args.verbose)


if __name__ == "__main__":
    main()
