"""Worst-case values, on the healthy traces, of the statistics the detectors threshold (docs/alerts.md).

    python benchmarks/alerts/derive_thresholds.py
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from orpo_dash.diagnostics import DEFAULT_THRESHOLDS as TH
from orpo_dash.diagnostics import load_metrics_file
from orpo_dash.diagnostics.stats import trend

TRACES = Path(__file__).parent / "traces"
W, LW, MIN_STEP = int(TH["window"]), int(TH["long_window"]), TH["min_step"]


def windows(series, w, start=0, every=5):
    st = np.array([p[0] for p in series], float)
    v = np.array([p[1] for p in series], float)
    for e in range(w, len(v) + 1, every):
        if st[e - 1] >= start:
            yield st[e - w: e], v[e - w: e]


def learn_step(series) -> int | None:
    v = np.array([p[1] for p in series])
    med = [np.median(v[max(0, i - 20): i + 21]) for i in range(len(v))]
    return next((series[i][0] for i, m in enumerate(med) if m > 0.5), None)


def main() -> None:
    labels = json.loads((TRACES / "labels.json").read_text())
    healthy = [n for n, lab in sorted(labels.items()) if not lab]
    runs = {n: load_metrics_file(TRACES / f"{n}.jsonl.gz") for n in healthy}
    print("step where the smoothed log odds ratio passes 0.5:",
          {n: learn_step(s["log_odds_ratio"]) for n, s in runs.items()})
    print(f"{'healthy trace':24s} {'minLORmed':>9s} {'LORfall/med':>11s} {'lossRise40':>10s} {'lossRise60':>10s} "
          f"{'chosenFall60':>12s} {'maxNLLfrac':>10s} {'evalRise':>8s} {'NLLstart':>8s}  log odds still low after min_step")
    for n, s in runs.items():
        lor = [trend(*w) for w in windows(s["log_odds_ratio"], W, MIN_STEP)]
        sig_fall = [-t.change / abs(t.median) for t in lor if t.z < -TH["trend_z"]]
        rise = {w: max((t.change / abs(t.median) for t in (trend(*x) for x in windows(s["loss"], w))
                        if t.z > TH["trend_z"]), default=0.0) for w in (W, LW)}
        chosen = s.get("logps_chosen")
        fall = max((-t.change for t in (trend(*x) for x in windows(chosen, LW)) if t.z < -TH["trend_z"]),
                   default=0.0) if chosen else 0.0
        nll = s["nll_loss"]
        base = np.median([p[1] for p in nll[:10]])
        fnl = max(np.median(w[1]) / base for w in windows(nll, W, MIN_STEP))
        print(f"{n:24s} {min(t.median for t in lor):9.2f} {max(sig_fall, default=0):11.2f} {rise[W]:10.3f} "
              f"{rise[LW]:10.3f} {fall:12.3f} {fnl:10.2f} {eval_rise(s):8.3f} {base:8.2f}  {slow_start(s)}")


def eval_rise(s) -> float:
    """Largest eval-NLL rise above its best that held for forget_open_after evaluations, counted as the
    detector does: the 3-eval median and the newest eval both above the best (3-eval median) so far."""
    ev = np.array([p[1] for p in s.get("eval/nll_loss", [])])
    if len(ev) < 3:
        return 0.0
    smooth = np.array([np.median(ev[i - 2: i + 1]) for i in range(2, len(ev))])
    best = np.minimum.accumulate(smooth)
    rise = np.minimum(smooth - best, ev[2:] - best) / best
    k = int(TH["forget_open_after"])
    return float(max(rise[i - k + 1: i + 1].min() for i in range(k - 1, len(rise))))


def slow_start(s) -> str:
    """Checks after min_step where the log odds ratio's window median is still under lor_flat_level: the
    long window's Mann-Kendall z and rise there (what lets a slow learner off until lor_grace_step),
    and the chosen NLL's long-window z (what keeps a model that writes the answers waiting after
    answers_grace_step)."""
    nll = {int(st[-1]): trend(st, v).z for st, v in windows(s["nll_loss"], LW, MIN_STEP, every=1)}
    out = []
    for st, v in windows(s["log_odds_ratio"], LW, MIN_STEP, every=10):
        if np.median(v[-W:]) < TH["lor_flat_level"]:
            t = trend(st, v)
            out.append(f"{st[-1]:.0f}: z={t.z:+.1f} rise={t.change:+.2f} nll_z={nll.get(int(st[-1]), float('nan')):+.1f}")
    return "; ".join(out)


if __name__ == "__main__":
    main()
