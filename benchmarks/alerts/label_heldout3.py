"""Label the third held-out collection (benchmarks/alerts/heldout3/) before any detector runs on it.

Every trace is labelled by label_traces.py's hindsight rules, unchanged (T_LEARN from the tuning
collection, as fresh_seeds.py, label_heldout.py and label_added.py take it), from the run's own
metrics. Beside each label goes the evidence the rule used, so that the label can be checked by
reading the numbers, against the product brief's definitions:

- non_finite: the first step where any logged value is NaN/Inf (the trainer writes them as null).
- over_penalization (brief: "the odds ratio penalty is too strong, the model becomes overly
  conservative"): the smoothed chosen log-prob sits > 0.2 nats/token below its peak over the last 50
  steps while the smoothed log odds ratio ends above its value at that peak, i.e. the chosen answer
  loses probability while the odds-ratio term goes on being won (onset: the peak).
- the other kinds as label_traces.py documents them.

A healthy run is labelled [] (no reason field: labels.json keeps [] for healthy); its evidence is
printed and kept in label_evidence.json. A label already in labels.json is never changed.

    python benchmarks/alerts/label_heldout3.py [--show]   # --show: print, write nothing
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from fresh_seeds import stored_t_learn  # noqa: E402
from label_traces import load, oracle, smooth  # noqa: E402

HELDOUT3 = Path(__file__).parent / "heldout3"


def evidence(rows: list[dict]) -> dict[str, object]:
    """The numbers the rules look at, for the reasons: first non-finite step and what went bad, and
    (before it) the smoothed chosen log-prob's peak and last-50 median, and the smoothed log odds ratio."""
    ev: dict[str, object] = {}
    for r in rows:
        bad = sorted(k for k, v in r.items() if isinstance(v, float) and not math.isfinite(v))
        if bad:
            ev["first_non_finite"] = {"step": int(r["step"]), "metrics": bad}
            rows = [x for x in rows if x["step"] < r["step"]]
            break
    if len(rows) < 10:
        return ev
    steps = [r["step"] for r in rows]
    lpc = smooth(steps, [r["logps_chosen"] for r in rows])
    lor = smooth(steps, [r["log_odds_ratio"] for r in rows])
    nll = smooth(steps, [r["nll_loss"] for r in rows])
    top = int(np.argmax(lpc))
    ev.update({
        "steps_judged": len(rows),
        "logps_chosen_peak": {"step": int(steps[top]), "value": round(float(lpc[top]), 3)},
        "logps_chosen_last50_median": round(float(np.median(lpc[-50:])), 3),
        "log_odds_ratio_at_peak": round(float(lor[top]), 3),
        "log_odds_ratio_end": round(float(lor[-1]), 3),
        "log_odds_ratio_max": round(float(lor.max()), 3),
        "nll_start_end": [round(float(nll[0]), 3), round(float(nll[-1]), 3)],
    })
    return ev


def reason(kind: str, ev: dict) -> str:
    if kind == "non_finite":
        f = ev["first_non_finite"]
        return f"rules: first non-finite value at step {f['step']} ({', '.join(f['metrics'])})"
    if kind == "over_penalization":
        p = ev["logps_chosen_peak"]
        return (f"rules: smoothed chosen log-prob peaks at {p['value']} (step {p['step']}), last-50 median "
                f"{ev['logps_chosen_last50_median']} (> 0.2 below), while the smoothed log odds ratio rises "
                f"{ev['log_odds_ratio_at_peak']} -> {ev['log_odds_ratio_end']}: the odds-ratio term wins at the "
                "chosen answer's expense")
    return "rules: " + {
        "catastrophic_forgetting": "eval NLL (3-eval median) rises > 10 % above its minimum; onset = the minimum's eval step",
        "loss_rising": "smoothed loss > 15 % above its minimum, last 50 steps > 10 % above, eval loss agrees; "
                       "onset = the train minimum",
        "log_odds_flat": "smoothed log odds ratio never above 0.5 after T_LEARN (onset T_LEARN), or collapsed "
                         "from its peak",
        "format_not_learned": "smoothed chosen NLL still > 0.7 x its start at T_LEARN and > 0.6 x over the last "
                              "50 steps (onset T_LEARN)",
    }[kind]


def main() -> None:
    show = "--show" in sys.argv
    t_learn = stored_t_learn()
    path = HELDOUT3 / "labels.json"
    labels = json.loads(path.read_text()) if path.exists() else {}
    ev_path = HELDOUT3 / "label_evidence.json"
    evid = json.loads(ev_path.read_text()) if ev_path.exists() else {}
    for p in sorted(HELDOUT3.glob("*.jsonl.gz")):
        name = p.name.removesuffix(".jsonl.gz")
        rows = load(p)
        ev = evidence(rows)
        got = oracle(rows, t_learn)
        print(f"{name:24s} {got}\n    {json.dumps(ev)}")
        if name in labels:
            continue
        labels[name] = [{"kind": k, "onset_step": s, "by": "label_traces rules", "reason": reason(k, ev)}
                        for k, s in sorted(got.items())]
        evid[name] = ev
    print(f"T_LEARN = {t_learn}")
    if not show:
        path.write_text(json.dumps(dict(sorted(labels.items())), indent=1) + "\n")
        ev_path.write_text(json.dumps(dict(sorted(evid.items())), indent=1) + "\n")


if __name__ == "__main__":
    main()
