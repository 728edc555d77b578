"""Label the held-out collection (benchmarks/alerts/heldout/) before any detector is run on it.

- `hsyn_*`: the injected pitfall and onset, written by make_heldout_traces.py (synthetic_labels.json).
- `ours_*` of 100 steps or more, and `trl_*`: label_traces.py's hindsight rules, unchanged, with T_LEARN
  from the tuning collection (as fresh_seeds.py does). TRL runs are read through diagnose's own import
  path (load_metrics_file on TRL's trainer_state.json) and turned into the rows the rules read.
- `ours_*` of 60 steps: by hand (HAND below, each with its reason). The rules smooth over 41 points and
  judge the last 50 steps, i.e. the whole of a 60-step run, and their T_LEARN comes from 400-step runs.

    python benchmarks/alerts/label_heldout.py [--show]   # --show: print each run's curves, write nothing
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from fresh_seeds import stored_t_learn  # noqa: E402
from label_traces import load, oracle  # noqa: E402

from orpo_dash.diagnostics import load_metrics_file  # noqa: E402

HELDOUT = Path(__file__).parent / "heldout"
SHORT = 60

# Hand labels of the 60-step runs of our trainer, written from their curves (--show), not from any alert.
HAND: dict[str, list[dict]] = {
    "ours_short_healthy_0": [],  # loss 5.95 -> 1.51, log odds 0.43 at step 9 and 1.1 at step 17, eval NLL falls throughout
    "ours_short_lr_too_high_0": [],  # lr 0.1 yet it learns: loss 5.9 -> 3.15, log odds 3.9, eval NLL 4.34 -> 3.01,
    #                                  never rising; a higher plateau than the healthy run is no labelled pitfall
    "ours_short_lr_too_low_0": [
        {"kind": "log_odds_flat", "onset_step": 1,
         "reason": "log odds ratio within +-0.06 of zero for all 60 steps (lr 1e-7): never learns"},
        {"kind": "format_not_learned", "onset_step": 1,
         "reason": "chosen NLL 5.84 -> 5.85 over 60 steps, eval NLL flat at 5.85: nothing learned"},
    ],
}
REASONS = {  # why each hand label says what it says, kept with the labels
    "ours_short_healthy_0": "loss 5.95 -> 1.51, log odds 0.43 at step 9, 1.1 at step 17; eval NLL falls throughout",
    "ours_short_lr_too_high_0": "lr 0.1 but it learns: loss 5.9 -> 3.15, log odds 3.9, eval NLL 4.34 -> 3.01, never rising",
}


def trl_rows(path: Path) -> list[dict]:
    """A TRL trainer_state.json as the labeller's rows: one dict per step, our metric names."""
    by_step: dict[int, dict] = {}
    for name, points in load_metrics_file(path).items():
        for step, value in points:
            by_step.setdefault(step, {"step": step})[name] = value
    return [by_step[s] for s in sorted(by_step) if "loss" in by_step[s] or len(by_step[s]) > 1]


def rows_of(path: Path) -> list[dict]:
    rows = trl_rows(path) if path.name.endswith(".json.gz") else load(path)
    train = [r for r in rows if "loss" in r and "log_odds_ratio" in r]
    for r in train:  # the eval metrics logged at a step are merged into that step's row
        r.update({k: v for k, v in next((x for x in rows if x["step"] == r["step"]), {}).items() if k not in r})
    evals = {r["step"]: r for r in rows if "loss" not in r or "log_odds_ratio" not in r}
    for r in train:
        r.update({k: v for k, v in evals.get(r["step"], {}).items() if k.startswith("eval/")})
    return train


def show(path: Path, rows: list[dict]) -> None:
    def at(key: str) -> str:
        pts = [(r["step"], r[key]) for r in rows if key in r]
        if not pts:
            return "-"
        idx = np.linspace(0, len(pts) - 1, min(8, len(pts))).astype(int)
        return " ".join(f"{pts[i][0]}:{pts[i][1]:.3g}" for i in idx)
    print(f"== {path.name}")
    for key in ("loss", "nll_loss", "log_odds_ratio", "grad_norm", "eval/loss", "eval/nll_loss"):
        print(f"   {key:15s} {at(key)}")


def main() -> None:
    t_learn = stored_t_learn()
    labels: dict[str, list[dict]] = {}
    for name, lab in json.loads((HELDOUT / "synthetic_labels.json").read_text()).items():
        labels[name] = [{**x, "by": "injected"} for x in lab]
    meta = json.loads((HELDOUT / "ours_runs.json").read_text())
    paths = sorted(HELDOUT.glob("ours_*.jsonl.gz")) + sorted(HELDOUT.glob("trl_*.json.gz"))
    for p in paths:
        name = p.name.removesuffix(".jsonl.gz").removesuffix(".json.gz")
        rows = rows_of(p)
        if "--show" in sys.argv:
            show(p, rows)
            continue
        if name.startswith("ours_") and meta[name]["steps"] <= SHORT:
            if name not in HAND:
                raise SystemExit(f"{name}: a {SHORT}-step run needs a hand label in HAND (look with --show)")
            labels[name] = [{**x, "by": "hand"} for x in HAND[name]]
            if not HAND[name]:
                labels[name] = []  # healthy; the reason is in REASONS (labels.json keeps [] for healthy)
        else:
            got = oracle(rows, t_learn)
            labels[name] = [{"kind": k, "onset_step": s, "by": "label_traces rules"} for k, s in sorted(got.items())]
        print(f"{name:28s} {[(x['kind'], x['onset_step']) for x in labels[name]]}")
    if "--show" not in sys.argv:
        (HELDOUT / "labels.json").write_text(json.dumps(dict(sorted(labels.items())), indent=1) + "\n")


if __name__ == "__main__":
    main()
