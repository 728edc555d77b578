"""Label traces added to a collection, by label_traces.py's hindsight rules, unchanged, before any detector
runs on them.

For a folder (traces/, heldout2/, ...): every trace (`*.jsonl.gz` of our trainer, or TRL's
`*.json.gz` trainer_state.json, read through diagnose's own import path as label_heldout.py does)
that its labels.json does not have yet gets the rules' labels, with T_LEARN from the tuning
collection's healthy runs (as fresh_seeds.py and label_heldout.py take it). A label already written
is never changed: relabelling after a detector has run is what this discipline rules out.

    python benchmarks/alerts/label_added.py FOLDER [--show]   # --show: print, write nothing
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from fresh_seeds import stored_t_learn  # noqa: E402
from label_heldout import rows_of  # noqa: E402
from label_traces import load, oracle  # noqa: E402


def trace_name(p: Path) -> str:
    return p.name.removesuffix(".jsonl.gz").removesuffix(".json.gz")


def main() -> None:
    folder = Path(sys.argv[1])
    show = "--show" in sys.argv
    t_learn = stored_t_learn()
    path = folder / "labels.json"
    labels = json.loads(path.read_text()) if path.exists() else {}
    added = {}
    for p in sorted([*folder.glob("*.jsonl.gz"), *folder.glob("*.json.gz")]):
        name = trace_name(p)
        if name in labels:
            continue
        rows = load(p) if p.name.endswith(".jsonl.gz") else rows_of(p)
        got = oracle(rows, t_learn)
        added[name] = [{"kind": k, "onset_step": s, "by": "label_traces rules"} for k, s in sorted(got.items())]
        nll = [r["nll_loss"] for r in rows if "nll_loss" in r]
        print(f"{name:28s} steps {rows[-1]['step']:4d}  nll {nll[0]:.2f} -> {nll[-1]:.2f}  {got}")
    print(f"T_LEARN = {t_learn}; {len(added)} traces labelled, {len(labels)} already labelled (unchanged)")
    if not show and added:
        path.write_text(json.dumps(dict(sorted({**labels, **added}.items())), indent=1) + "\n")


if __name__ == "__main__":
    main()
