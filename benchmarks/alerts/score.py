"""Score the detectors on the labelled trace collection.

Per kind: recall (labelled (trace, kind) pairs where an alert of that kind opened), false alarms
(alerts of that kind on healthy traces, i.e. labelled []), spurious (that kind on a pitfall trace not
labelled with it: reported, not a target) and the median detection delay, step opened - onset
(an alert opening before the labelled onset counts as delay 0).

    python benchmarks/alerts/score.py [--threshold KEY=VALUE ...] [--verbose]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from orpo_dash.diagnostics import KINDS, diagnose, load_metrics_file

TRACES = Path(__file__).parent / "traces"


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
    print(f"{'kind':24s} {'recall':>12s} {'false alarms':>14s} {'spurious':>9s} {'median delay':>13s}")
    for k in KINDS:
        rec = f"{hits[k]}/{wanted[k]} {hits[k] / wanted[k]:.2f}" if wanted[k] else "-"
        med = f"{np.median(delays[k]):.0f}" if delays[k] else "-"
        print(f"{k:24s} {rec:>12s} {false[k]:>9d}/{healthy:<4d} {spurious[k]:>9d} {med:>13s}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threshold", action="append", default=[])
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()
    th = {k: float(v) for k, v in (s.split("=") for s in args.threshold)}
    labels = json.loads((TRACES / "labels.json").read_text())
    results = {
        name: ({x["kind"]: x["onset_step"] for x in lab}, first_openings(TRACES / f"{name}.jsonl.gz", th))
        for name, lab in labels.items()
    }
    print_table(results, verbose=args.verbose)


if __name__ == "__main__":
    main()
