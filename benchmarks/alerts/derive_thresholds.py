"""Worst-case values, on the healthy traces, of the statistics the detectors threshold (docs/alerts.md).

    python benchmarks/alerts/derive_thresholds.py [--pace]   # --pace: only format_not_learned's forecast
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from orpo_dash.diagnostics import DEFAULT_THRESHOLDS as TH
from orpo_dash.diagnostics import load_metrics_file
from orpo_dash.diagnostics.alerts import for_planned_length
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


def trace_file(name: str) -> Path:
    jsonl = TRACES / f"{name}.jsonl.gz"
    return jsonl if jsonl.exists() else TRACES / f"{name}.json.gz"


def pace_needed(nll: list[tuple[int, float]], th: dict[str, float],
                lor: list[tuple[int, float]] | None = None) -> list[tuple[int, float]]:
    """format_not_learned's forecast, per check (every check_every steps from min_step, th already
    scaled to the run's planned length = its last step): the largest fnl_pace_factor at which the
    forecast still ends above fnl_end_level x the start (median of the first 21 points), i.e. the
    factor below which the forecast fires there. inf: the NLL is not falling (any factor fires); 0:
    already below the level. Only checks the detector judges at all (window median at least
    fnl_nll_floor and above fnl_end_level - fnl_clear_margin of its first-10 start, Mann-Kendall z at
    most trend_z), and not those where a model that already writes the answers waits (lor: the log
    odds ratio series, for that wait's condition)."""
    w, lw, planned = int(th["window"]), int(th["long_window"]), nll[-1][0]
    if planned < 2 * th["fnl_end_tail"]:
        return []
    base = float(np.median([v for _, v in nll[:10]]))
    start = float(np.median([v for _, v in nll[:21]]))
    lor_at = dict(lor or [])
    steps_all = np.array([x for x, _ in nll], float)
    vals_all = np.array([y for _, y in nll], float)
    out = []
    for st, v in windows(nll, w, th["min_step"], every=int(th["check_every"])):
        end_i = int(np.searchsorted(steps_all, st[-1])) + 1
        if base < th["answers_nll"] and lor_at:
            lv = [lor_at[int(x)] for x in st if int(x) in lor_at]
            if lv and np.median(lv) > 0:
                if st[-1] < th["answers_grace_step"]:
                    continue
                if trend(steps_all[max(0, end_i - lw):end_i], vals_all[max(0, end_i - lw):end_i]).z <= -th["answers_nll_z"]:
                    continue
        t = trend(st, v)
        if t.median < th["fnl_nll_floor"] or t.median / base < th["fnl_end_level"] - th["fnl_clear_margin"]:
            continue
        if t.z > th["trend_z"]:
            continue
        slope = t.slope
        if end_i >= lw:
            slope = min(slope, trend(steps_all[end_i - lw:end_i], vals_all[end_i - lw:end_i]).slope)
        gap = t.median - th["fnl_end_level"] * start  # what the NLL must still lose
        room = -min(slope, 0.0) * max(planned - th["fnl_end_tail"] / 2 - (st[0] + st[-1]) / 2, 0.0)
        out.append((int(st[-1]), 0.0 if gap <= 0 else float("inf") if room <= 0 else gap / room))
    return out


def pace() -> None:
    """Which fnl_pace_factor separates the tuning set's healthy runs from its format_not_learned ones."""
    labels = json.loads((TRACES / "labels.json").read_text())
    worst_healthy, caught_at = 0.0, []
    print(f"{'trace':28s} {'label':>6s} {'max d*':>7s}  (d* per check: fires when fnl_pace_factor < d*)")
    for n, lab in sorted(labels.items()):
        kinds = {x["kind"]: x["onset_step"] for x in lab}
        if lab and "format_not_learned" not in kinds:
            continue
        s = load_metrics_file(trace_file(n))
        nll = s.get("nll_loss")
        if not nll:
            continue
        th = for_planned_length(TH, nll[-1][0])
        need = pace_needed(nll, th, s.get("log_odds_ratio"))
        top = max((d for _, d in need), default=0.0)
        if lab:
            onset = kinds["format_not_learned"]
            caught_at.append((n, max((d for st, d in need if st <= onset + 50), default=0.0)))
        else:
            worst_healthy = max(worst_healthy, top)
        print(f"{n:28s} {'fnl' if lab else 'ok':>6s} {top:7.2f}  " + " ".join(f"{st}:{d:.2f}" for st, d in need[:8]))
    lowest = min(caught_at, key=lambda x: x[1])
    print(f"healthy: largest d* {worst_healthy:.2f} (a factor above it raises no false alarm); "
          f"format_not_learned: smallest d* within 50 steps of onset {lowest[1]:.2f} ({lowest[0]})")


def main() -> None:
    if "--pace" in sys.argv:
        pace()
        return
    labels = json.loads((TRACES / "labels.json").read_text())
    healthy = [n for n, lab in sorted(labels.items()) if not lab]
    runs = {n: load_metrics_file(trace_file(n)) for n in healthy}
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
