"""Label the real traces in hindsight, independently of the online detectors.

The detectors see train metrics one step at a time, through a bounded window. The labels here see
the whole run at once: heavily smoothed train curves (centred 41-point running median) and the
held-out eval curve (fixed 128-pair set). A run is labelled with a kind only if its full history
shows the pitfall; the scenario that was meant to induce it is not used. Rules (onset = where it starts):

- non_finite: first step with any NaN/Inf value.
- log_odds_flat: smoothed log odds ratio never exceeds 0.5 after T_LEARN (onset T_LEARN), or over
  the last 50 steps it sits more than max(0.5, 25 % of the peak) below its peak (onset: the peak).
  The fall was 0.5 in absolute terms while healthy runs peaked at log odds ~1-3; our trainer's runs
  reach 5-11, where a smoothed curve wanders by 0.5 without anything collapsing (real_lr_too_high_2:
  4.95 -> 4.37 while its eval log odds kept rising), so the fall is now relative above a peak of 2.
- format_not_learned: smoothed chosen NLL at T_LEARN is still > 0.7 x its start and over the last
  50 steps still > 0.6 x its start (onset T_LEARN), in a run that did not start with the format
  already learned: a model whose smoothed chosen NLL starts below 1 nat/token (the sft_* runs, SFT'd
  first, like a pretrained model on data in its own format) has nothing left to learn there.
- loss_rising: smoothed loss rises > 15 % above its minimum and the last 50 steps sit > 10 % above
  it, and the held-out eval loss agrees (last 5 evals > 10 % above its minimum): the train curve
  alone is too noisy at batch size 4 to be ground truth (onset: the train minimum).
- over_penalization: smoothed chosen log-prob sits > 0.2 nats/token below its peak over the last 50
  steps while the smoothed log odds ratio ends above its value at the peak (onset: the peak).
- catastrophic_forgetting: eval NLL (3-eval median) rises > 10 % above its minimum (onset: the minimum).

T_LEARN is derived from the healthy-by-design runs: the latest step at which any of them has its
smoothed log odds ratio above 0.5 (they all learn by then). Only steps before the first non-finite
value are judged for the other kinds. Writes traces/labels.json entries for real_* traces.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from traces import TRACES, read_rows  # noqa: E402


def smooth(steps: list[int], values: list[float], k: int = 41) -> np.ndarray:
    v = np.asarray(values, dtype=float)
    h = k // 2
    return np.array([np.median(v[max(0, i - h): i + h + 1]) for i in range(len(v))])


def load(path: Path) -> list[dict]:
    """Train rows, each with the eval metrics logged at its step merged in (the trainer writes them
    as a separate line with the same step)."""
    rows: dict[int, dict] = {}
    for r in read_rows(path):
        rows.setdefault(int(r["step"]), {}).update(r)
    return [r for _, r in sorted(rows.items())]


def first_non_finite(rows: list[dict]) -> int | None:
    for r in rows:
        if any(isinstance(v, float) and not math.isfinite(v) for v in r.values()):
            return int(r["step"])
    return None


def learn_step(rows: list[dict]) -> int:
    steps = [r["step"] for r in rows]
    lor = smooth(steps, [r["log_odds_ratio"] for r in rows])
    above = np.nonzero(lor > 0.5)[0]
    return int(steps[above[0]]) if len(above) else int(steps[-1])


def oracle(rows: list[dict], t_learn: int) -> dict[str, int]:
    labels: dict[str, int] = {}
    bad = first_non_finite(rows)
    if bad is not None:
        labels["non_finite"] = bad
        rows = [r for r in rows if r["step"] < bad]
    steps = np.array([r["step"] for r in rows])
    lor = smooth(steps, [r["log_odds_ratio"] for r in rows])
    nll = smooth(steps, [r["nll_loss"] for r in rows])
    loss = smooth(steps, [r["loss"] for r in rows])
    lpc = smooth(steps, [r["logps_chosen"] for r in rows])
    after = steps >= t_learn
    if after.any():
        if lor[after].max() <= 0.5:
            labels["log_odds_flat"] = t_learn
        if nll[0] >= 1.0 and nll[np.argmax(after)] > 0.7 * nll[0] and np.median(nll[-50:]) > 0.6 * nll[0]:
            labels["format_not_learned"] = t_learn
    peak = int(np.argmax(lor))
    if ("log_odds_flat" not in labels and np.median(lor[-50:]) < lor[peak] - max(0.5, 0.25 * lor[peak])
            and peak < len(lor) - 50):
        labels["log_odds_flat"] = int(steps[peak])
    lo = int(np.argmin(loss))
    ev_loss = [(r["step"], r["eval/loss"]) for r in rows if "eval/loss" in r]
    eval_rises = False
    if len(ev_loss) >= 5:
        el = smooth([], [v for _, v in ev_loss], k=3)
        eval_rises = np.median(el[-5:]) > 1.10 * el.min()
    if loss[lo:].max() > 1.15 * loss[lo] and np.median(loss[-50:]) > 1.10 * loss[lo] and eval_rises:
        labels["loss_rising"] = int(steps[lo])
    top = int(np.argmax(lpc))
    if np.median(lpc[-50:]) < lpc[top] - 0.2 and lor[-1] > lor[top]:
        labels["over_penalization"] = int(steps[top])
    ev = [(r["step"], r["eval/nll_loss"]) for r in rows if "eval/nll_loss" in r]
    if len(ev) >= 3:
        es = smooth([s for s, _ in ev], [v for _, v in ev], k=3)
        m = int(np.argmin(es))
        if es[m:].max() > 1.10 * es[m]:
            labels["catastrophic_forgetting"] = int(ev[m][0])
    return labels


def main() -> None:
    paths = sorted(TRACES.glob("real_*.jsonl.gz"))
    name = lambda p: p.name.removesuffix(".jsonl.gz")  # noqa: E731
    healthy = [p for p in paths if name(p).startswith("real_healthy_")]
    t_learn = max(learn_step(load(p)) for p in healthy)
    print(f"T_LEARN = {t_learn} (latest healthy run to reach a smoothed log odds ratio of 0.5)")
    label_path = TRACES / "labels.json"
    labels = json.loads(label_path.read_text()) if label_path.exists() else {}
    for p in paths:
        got = oracle(load(p), t_learn)
        labels[name(p)] = [{"kind": k, "onset_step": s} for k, s in sorted(got.items())]
        print(f"{name(p):26s} {got}")
    label_path.write_text(json.dumps(dict(sorted(labels.items())), indent=1) + "\n")


if __name__ == "__main__":
    main()
