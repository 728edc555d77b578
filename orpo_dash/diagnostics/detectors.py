"""The pitfall detectors: functions of bounded recent metric windows.

Each detector looks at the latest `window` points (loss_rising and over_penalization also at
`long_window`, catastrophic_forgetting at the last few evals) of the few metrics it reads and returns
a Verdict: whether its condition holds now (`firing`), whether it has clearly cleared (`clear`,
stricter than "not firing", which is what keeps a borderline series from flapping; a verdict that
waits is neither), the severity and a message with the numbers behind it. None means "not enough
evidence yet". Two carry a little state between calls (over_penalization's best chosen log-prob,
catastrophic_forgetting's best eval NLL), passed in by the engine. Every factor they compare against
is a threshold in alerts.THRESHOLDS. The open/close bookkeeping (hysteresis) lives in engine.py;
non_finite is point-wise and also lives there.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from itertools import islice

import numpy as np

from orpo_dash import metric_names as m
from orpo_dash.diagnostics import alerts as a
from orpo_dash.diagnostics.stats import Trend, median, trend

# Fixed counts and constants, not thresholds: they shape how a series is read, not when a detector fires.
# The thresholds (what to tune) are alerts.THRESHOLDS.
BASELINE_POINTS = 10  # points that define a metric's starting level
START_POINTS = 21  # format_not_learned's forecast measures from the median of this many first points, the
#                    start label_traces.py's rule measures from (its 41-point running median at step 1)
BLOWUP_REF_POINTS = 10  # the blow-up rule compares the newest points with the median of this many before them
EVAL_MEDIAN_POINTS = 3  # catastrophic_forgetting smooths eval NLL as the median of this many evals
EVAL_NOISE_POINTS = 10  # ...and estimates its point-to-point noise from the last this many
MIN_NOISE_EVALS = 4  # fewer evals than this: no noise estimate (taken as 0)
MIN_TREND_EVALS = 4  # a best fewer evals old than this needs no trend (alerts' forget_trend_evals >= this)
ONSET_SMOOTH_POINTS = 5  # running-mean width when locating a trend's turning point (its onset)
MAD_TO_SD = 1.4826  # median absolute deviation -> standard deviation, for normally distributed noise
TINY = 1e-12  # keeps a division or a log finite when its argument is zero


class Series:
    """Recent points of one metric (bounded), its first few values, an update counter, and the
    window arrays and trend of the current version, cached: two detectors reading the same metric
    at the same step share one computation."""

    __slots__ = ("_baseline", "_cached", "head", "steps", "values", "version")

    def __init__(self, maxlen: int) -> None:
        self.steps: deque[int] = deque(maxlen=maxlen)
        self.values: deque[float] = deque(maxlen=maxlen)
        self.head: list[float] = []
        self.version = 0
        self._cached: dict[object, object] = {}
        self._baseline: float | None = None

    def append(self, step: int, value: float) -> None:
        self.steps.append(step)
        self.values.append(value)
        if len(self.head) < START_POINTS:
            self.head.append(value)
        self.version += 1

    @property
    def points(self) -> list[tuple[int, float]]:
        return list(zip(self.steps, self.values, strict=True))

    def _memo(self, key: object, make: Callable[[], object]) -> object:
        if self._cached.get("version") != self.version:
            self._cached = {"version": self.version}
        if key not in self._cached:
            self._cached[key] = make()
        return self._cached[key]

    def window(self, n: int) -> tuple[np.ndarray, np.ndarray] | None:
        if len(self.values) < n:
            return None
        return self._memo(("window", n), lambda: (  # type: ignore[return-value]
            np.fromiter(islice(self.steps, len(self.steps) - n, None), float, n),
            np.fromiter(islice(self.values, len(self.values) - n, None), float, n),
        ))

    def trend(self, n: int) -> Trend | None:
        """Trend of the last n points (None when there are fewer)."""
        win = self.window(n)
        return None if win is None else self._memo(("trend", n), lambda: trend(*win))  # type: ignore[return-value]

    @property
    def baseline(self) -> float | None:
        if self._baseline is None and len(self.head) >= BASELINE_POINTS:
            self._baseline = float(np.median(self.head[:BASELINE_POINTS]))
        return self._baseline

    @property
    def start(self) -> float | None:
        """Median of the first START_POINTS values (None until there are that many)."""
        return float(np.median(self.head)) if len(self.head) == START_POINTS else None


@dataclass(frozen=True)
class Verdict:
    firing: bool
    clear: bool
    severity: str = a.WARNING
    onset_step: int = 0
    message: str = ""
    evidence: dict[str, object] = field(default_factory=dict)
    # `message` is a plain sentence a reader acts on ("the log odds ratio has stayed near zero for 40
    # steps"); `details` holds the statistics behind it (Theil-Sen, Mann-Kendall, medians), shown second.
    details: str = ""


Lookup = Callable[[str], "Series | None"]


def _first(get: Lookup, names: tuple[str, ...]) -> tuple[str, Series] | None:
    for name in names:
        s = get(name)
        if s is not None and s.version:
            return name, s
    return None


def _trend(s: Series, n: int) -> Trend:
    """Series.trend for callers that have already checked s.window(n) is not None (so the trend is not)."""
    t = s.trend(n)
    assert t is not None
    return t


def _fmt(t: Trend) -> str:
    return f"Theil-Sen change {t.change:+.3g}, Mann-Kendall z={t.z:+.1f}"


def _steps(onset: int, step: int) -> str:
    """'since step 21 (40 steps)': how long a trend has held when it was judged. An open alert keeps
    the message it opened with, so it names steps, never "the last N steps" (stale a minute later)."""
    return f"since step {onset} ({step - onset} steps)"


def log_odds_flat(get: Lookup, th: Mapping[str, float], step: int, planned_steps: int | None = None
                  ) -> Verdict | None:
    """A log odds ratio near zero (below `lor_flat_level`, not rising) or falling significantly.

    The verdict is graded by the strength of the evidence. A clearly flat one (window median below
    `lor_sure_frac` x `lor_flat_level`) is judged from min_step. A borderline one (median between that and
    `lor_flat_level`, not falling significantly) is only judged once the run is `lor_borderline_frac` of
    its planned length in: a slow climber sits at 0.25-0.3 for a while and may still pass the 0.5 that
    label_traces.py calls learned (tune_swapped_labels_0: 0.24-0.30 at steps 100-150, past 0.5 near step
    190), which at step 100 looks exactly like a run that stays there (tune_swapped_labels_2). With no
    planned length known the borderline is judged from min_step, as before."""
    s = get(m.LOG_ODDS_RATIO)
    w = int(th["window"])
    if s is None or step < th["min_step"] or (win := s.window(w)) is None:
        return None
    t = _trend(s, w)
    level, rise, drop, zc = th["lor_flat_level"], th["lor_min_rise"], th["lor_drop"], th["trend_z"]
    onset = int(win[0][0])
    clear_level, not_falling_z = th["lor_clear_level"] * level, -th["lor_clear_z_frac"] * zc
    if t.median > clear_level and t.z >= not_falling_z:  # well above zero and not falling: clear, no slope needed
        return Verdict(False, True, a.WARNING, onset, "the log odds ratio is well above zero",
                       details=f"median {t.median:.2f} over steps {onset}-{step}, Mann-Kendall z={t.z:+.1f}")
    flat = t.median < level and t.change < rise and not _still_rising(s, th, step)
    if flat and not t.z < -zc and _writes_the_answers_and_still_learns(get, th, step):
        return Verdict(False, False, a.WARNING, onset)  # not judged yet: neither firing nor clear
    falling = t.z < -zc and t.change < -max(drop, th["lor_drop_frac"] * abs(t.median))
    if flat and not t.z < -zc and _borderline_waits(t.median, th, step, planned_steps):
        return Verdict(False, False, a.WARNING, onset)  # borderline, not judged yet: neither firing nor clear
    if falling and not flat:
        msg = f"the log odds ratio has been falling {_steps(onset, step)}: the model prefers the chosen responses less"
    else:
        msg = (f"the log odds ratio has stayed near zero {_steps(onset, step)}: the model is not learning to "
               "prefer the chosen responses")
    details = (f"median {t.median:.2f} over steps {onset}-{step}, {_fmt(t)}; healthy runs are above {level:g} "
               f"and rising by step {th['min_step']:g}")
    severity = a.CRITICAL if t.median < -level else a.WARNING
    clear = (t.median > clear_level or t.change > th["lor_clear_rise"] * rise) and not t.z < not_falling_z
    return Verdict(flat or falling, clear, severity, onset, msg, details=details)


def _borderline_waits(lor_median: float, th: Mapping[str, float], step: int, planned_steps: int | None) -> bool:
    """Whether a flat verdict on a log odds ratio median that is only borderline low (at or above
    `lor_sure_frac` x `lor_flat_level`) waits: until `lor_borderline_frac` of the planned length."""
    if not planned_steps or lor_median < th["lor_sure_frac"] * th["lor_flat_level"]:
        return False
    return step < th["lor_borderline_frac"] * planned_steps


def _writes_the_answers_and_still_learns(get: Lookup, th: Mapping[str, float], step: int) -> bool:
    """Whether a 'not learning' verdict (log_odds_flat, format_not_learned) waits, in a model that
    already writes the chosen answers.

    Such a model (chosen NLL starting below `answers_nll`: SFT'd, or pretrained on data in its own
    format) starts ORPO with its log odds ratio near zero and its NLL near where it will stay, and at
    a small beta both move slowly at first: real_sft_short_1..3 sat below a log odds ratio of 0.1 for
    ~100 steps and passed 0.5 at steps 217-242, their NLL 96-99 % of its start at step 60. At step 60
    one of them looked exactly like a learning rate far too low. So the verdict waits until
    `answers_grace_step`, and after that while the chosen NLL still falls significantly over
    `long_window` (Mann-Kendall z <= -`answers_nll_z`): training is still moving the model. A learning
    rate far too low, or chosen responses that are noise, move nothing (z around 0) and are judged.

    Only while the model prefers the chosen responses, if slightly (log odds ratio median above zero):
    where the labels fight what it learned (pairs swapped, chosen replaced by noise) the median sits at
    or below zero from the start (real_sft_swapped_labels_*, real_sft_noisy_chosen_*) while its NLL
    falls just the same; those are judged at min_step like any other run."""
    nll, lor = get(m.NLL_LOSS), get(m.LOG_ODDS_RATIO)
    if nll is None or lor is None or (base := nll.baseline) is None or base >= th["answers_nll"]:
        return False
    lw = lor.window(int(th["window"]))
    if lw is None or median(lw[1]) <= 0:
        return False
    if step < th["answers_grace_step"]:
        return True
    t = nll.trend(int(th["long_window"]))
    return t is not None and t.z <= -th["answers_nll_z"]


def _still_rising(s: Series, th: Mapping[str, float], step: int) -> bool:
    """A low log odds ratio that is still rising clearly (significant over `long_window`, by at least
    `lor_slow_rise`) is a slow learner, not a flat one: a model that already writes the answers
    starts ORPO near zero and can take ~100 steps to climb. It gets until `lor_grace_step`; a run still
    below the level after that is flagged however it creeps, so a learning rate far too low is not
    excused by a tiny but steady drift."""
    if step >= th["lor_grace_step"] or (lt := s.trend(int(th["long_window"]))) is None:
        return False
    return lt.z >= th["lor_rising_z"] and lt.change >= th["lor_slow_rise"]


def _two_scales(th: Mapping[str, float], judge: Callable[[int], Verdict | None], leans: Callable[[], bool]
                ) -> Verdict | None:
    """A slow drift is invisible to a short window under batch noise; a long one sees it but reacts
    late to a fast one. Judge on `window` points and, when that does not fire but the short window
    leans the pitfall's way (`leans`: a cheap look at its Mann-Kendall z, so healthy runs skip the
    long window's cost), on `long_window`: fire if either does, clear only when the short one is
    clear and the long one does not fire."""
    short = judge(int(th["window"]))
    if short is None or short.firing or not leans():
        return short
    long = judge(int(th["long_window"]))
    if long is None:
        return short
    if long.firing:
        return long
    return Verdict(False, short.clear, short.severity, short.onset_step, short.message, details=short.details)


def loss_rising(get: Lookup, th: Mapping[str, float], step: int, st: EvalBest | None = None) -> Verdict | None:
    """Total loss trending up on the train side (two scales), or the held-out loss rising above its
    best eval: a train loss that swings by orders of magnitude shows no trend at all while the eval
    loss climbs (issue 16: train 0.1-55, eval 17 -> 32)."""
    train = _train_loss_rising(get, th, step)
    # The eval *loss*: a rising eval NLL alone is catastrophic_forgetting's evidence, not a second alert.
    if st is None or (src := _first(get, (m.EVAL_PREFIX + m.LOSS,))) is None:
        return train
    return _either(train, _eval_rising(src[0], src[1], st, th, th["eval_rise_frac"], "loss_rising"))


def _either(first: Verdict | None, second: Verdict | None) -> Verdict | None:
    """One verdict from two rules for the same kind: the firing one (first wins), else clear only when
    both are; `first` speaks for the pair while neither fires."""
    if first is None or second is None:
        return first or second
    if first.firing:
        return first
    if second.firing:
        return second
    return Verdict(False, first.clear and second.clear, first.severity, first.onset_step, first.message,
                   details=first.details)


def _train_loss_rising(get: Lookup, th: Mapping[str, float], step: int) -> Verdict | None:
    s = get(m.LOSS)
    if s is None:
        return None

    def judge(w: int) -> Verdict | None:
        if (win := s.window(w)) is None:
            return None
        t = _trend(s, w)
        if t.z < -th["loss_falling_z"]:  # falling: clear, and the slope is not needed
            return Verdict(False, True, a.WARNING, int(win[0][0]), "the total loss is falling",
                           details=f"steps {int(win[0][0])}-{step}, Mann-Kendall z={t.z:+.1f}")
        need = th["loss_rise_frac"] * abs(t.median)
        firing = t.z > th["trend_z"] and t.change > need
        onset = int(win[0][np.argmin(_running_mean(win[1]))]) if firing else int(win[0][0])
        base = s.baseline
        severity = a.CRITICAL if base is not None and t.median > base else a.WARNING
        msg = f"the total loss has been rising {_steps(onset, step)}"
        details = (f"{_fmt(t)} over steps {int(win[0][0])}-{step}, {t.change / max(abs(t.median), TINY):+.0%} "
                   f"of its median {t.median:.3g}")
        clear = t.change < th["loss_clear_frac"] * need and t.z < th["loss_clear_z"]
        evidence = {"metric": m.LOSS, "from_step": int(win[0][0]), "to_step": step, "change": round(t.change, 4),
                    "median": round(t.median, 4), "mann_kendall_z": round(t.z, 2)}
        return Verdict(firing, clear, severity, onset, msg, evidence, details)

    return _two_scales(th, judge, lambda: _trend(s, int(th["window"])).z > th["loss_leans_z"])


# Kinds a learning rate far too high explains: their own advice (raise the lr, lower beta, check the
# data) would treat a symptom of the blow-up.
EXPLAINED_BY_LR = (a.LOG_ODDS_FLAT, a.OVER_PENALIZATION, a.FORMAT_NOT_LEARNED)


def loss_blowup(get: Lookup, th: Mapping[str, float], step: int) -> Verdict | None:
    """A change point, not a trend: the loss multiplies `blowup_factor` times within a few logged points
    while the grad norm spikes `blowup_grad_factor` times its level before. Trend windows need dozens
    of points and, by the time they fill, hold both the rise and the recovery (issue 16: 1.0 -> 9.5 at
    steps 12-20, z ~ 0 at step 40); this opens within `blowup_points` points of the jump.

    The median of the last `blowup_points` losses must stand that high (and above every loss of the
    reference points), so one bad batch (a single spike) is not a blow-up, and the grad norm must spike with it: that is what names the learning
    rate as the cause. Without a grad_norm series it does not judge."""
    s, g = get(m.LOSS), get(m.GRAD_NORM)
    k = int(th["blowup_points"])
    if s is None or g is None or len(s.values) <= k or len(g.values) <= k:
        return None
    vals = list(islice(s.values, max(0, len(s.values) - k - BLOWUP_REF_POINTS), None))
    recent, before = vals[-k:], vals[:-k]
    ref, level = _small_median(before), _small_median(recent)
    # A change point stands above everything before it: in a run whose loss already swings by orders
    # of magnitude, three high batches in a row are still noise.
    if not (ref > 0 and level > th["blowup_factor"] * ref and level > max(before)):
        return Verdict(False, False)
    # The grad norm spike: its highest value since the last reference point, against its median before.
    first = int(s.steps[-k])
    gpts = [(st, v) for st, v in zip(islice(g.steps, max(0, len(g.steps) - k - 2 - BLOWUP_REF_POINTS), None),
                                      islice(g.values, max(0, len(g.values) - k - 2 - BLOWUP_REF_POINTS), None),
                                      strict=True)]
    g_before = [v for st, v in gpts if st < first - 1]
    g_during = [(v, st) for st, v in gpts if st >= first - 1]
    if not g_before or not g_during:
        return Verdict(False, False)
    g_ref = _small_median(g_before)
    g_max, g_step = max(g_during)
    if not g_max > th["blowup_grad_factor"] * max(g_ref, TINY):
        return Verdict(False, False)
    lr = get(m.LEARNING_RATE)
    lr_now = float(lr.values[-1]) if lr is not None and lr.values else None
    lr_text = f", learning rate {lr_now:.3g}" if lr_now is not None else ""
    msg = (f"the loss jumped from {ref:.3g} to {level:.3g} (x{level / ref:.1f}) between steps {first} and {step}, "
           "with a grad-norm spike: the learning rate is too high")
    details = (f"grad norm {g_max:.3g} at step {g_step}, x{g_max / max(g_ref, TINY):.0f} its level before "
               f"({g_ref:.3g}){lr_text}; loss medians of the last {k} points against the {len(before)} before")
    evidence: dict[str, object] = {
        "cause": "learning_rate", "metric": m.LOSS, "loss_before": round(ref, 4), "loss_now": round(level, 4),
        "from_step": first, "to_step": step, "grad_norm": round(g_max, 4), "grad_norm_step": int(g_step),
        "grad_norm_before": round(g_ref, 4), "explains": list(EXPLAINED_BY_LR)}
    if lr_now is not None:
        evidence["learning_rate"] = lr_now
    return Verdict(True, False, a.CRITICAL, first, msg, evidence, details)


def _small_median(values: list[float]) -> float:
    """Median of a short list (no numpy: this runs on every step)."""
    v = sorted(values)
    n = len(v)
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2


class EvalBest:
    """Best (lowest) smoothed eval value so far: the state behind the eval rules."""

    def __init__(self) -> None:
        self.best = math.inf
        self.best_step = 0
        self.seen = 0


def _eval_level(es: Series, name: str, st: EvalBest) -> tuple[np.ndarray, np.ndarray, float, int] | None:
    """The last (up to) 3 evals on a log scale for perplexities, their median, its step; updates the best.

    The median of 3 evals is robust to one noisy eval; before there are 3, the median of those there
    are counts, so the first eval can be the best: a run that blows up right after its first eval
    (1.25 -> 7.5 -> 3.4) is measured against 1.25, not against a median that already holds the rise."""
    n = min(EVAL_MEDIAN_POINTS, len(es.values))
    win = es.window(n) if n else None
    if win is None:
        return None
    values = np.log(np.maximum(win[1], TINY)) if name.endswith(m.PPL_CHOSEN) else win[1]
    smooth, at = median(values), int(win[0][-1])
    if es.version != st.seen:
        st.seen = es.version
        if smooth < st.best:
            st.best, st.best_step = smooth, at
    return win[0], values, smooth, at


def _eval_rising(name: str, es: Series, st: EvalBest, th: Mapping[str, float], rise_frac: float, kind: str
                 ) -> Verdict | None:
    """loss_rising's held-out rule: the eval loss (3-eval median and the newest eval) more than
    `rise_frac` above its best eval and clear of the eval series' noise."""
    level = _eval_level(es, name, st)
    if level is None:
        return None
    _, values, smooth, at = level
    scale = max(abs(st.best), TINY)
    rise, newest = (smooth - st.best) / scale, (values[-1] - st.best) / scale
    firing = rise > rise_frac and newest > rise_frac and smooth - st.best > th["forget_noise_k"] * _eval_noise(es, name)
    severity = a.CRITICAL if rise > th["forget_critical_factor"] * rise_frac else a.WARNING
    msg = f"the held-out {name} has risen {rise:.0%} above its best (step {st.best_step})"
    details = f"{smooth:.3g} at step {at} (median of the last evals) against a best of {st.best:.3g} at step {st.best_step}"
    evidence = {"metric": name, "value": round(smooth, 4), "step": at, "best": round(st.best, 4),
                "best_step": st.best_step, "rise": round(rise, 4), "kind": kind}
    return Verdict(firing, rise < 0.5 * rise_frac and not firing, severity, st.best_step, msg, evidence, details)


class PenalizationState:
    """Highest level of the chosen log-prob so far (window median, or the run's first points), and
    the log odds ratio's level then: what over_penalization's level rule compares against."""

    def __init__(self) -> None:
        self.best = -math.inf
        self.best_step = 0
        self.lor_at_best = 0.0


def over_penalization(get: Lookup, th: Mapping[str, float], step: int,
                      st: PenalizationState | None = None) -> Verdict | None:
    """The chosen log-prob falling while the log odds ratio grows, with the odds-ratio term a real part
    of the loss (`op_min_or_share`): then the penalty (beta) is the cause."""
    lor = get(m.LOG_ODDS_RATIO)
    chosen = _first(get, (m.LOGPS_CHOSEN, m.NLL_LOSS))
    if lor is None or chosen is None:
        return None
    name, cs = chosen
    share = _or_share(get, th)
    if share is not None and share < th["op_min_or_share"]:
        # The penalty is a negligible part of the loss: whatever pulls the chosen log-prob down, it is
        # not beta (issue 16: OR term 0.001-0.02 against an NLL of 2-9 after an lr blow-up).
        return Verdict(False, True, a.WARNING, 0,
                       f"the odds-ratio term is {share:.1%} of the loss: too small to over-penalize")
    sign = -1.0 if name == m.NLL_LOSS else 1.0  # NLL ~ minus the mean chosen log-prob
    verdict = _over_penalization_verdict(lor, cs, sign, th, step, st)
    if verdict is None or not verdict.firing:
        return verdict
    evidence = {**verdict.evidence, "cause": "beta", "metric": name}
    if share is not None:
        evidence["or_share"] = round(share, 4)
    return Verdict(verdict.firing, verdict.clear, verdict.severity, verdict.onset_step, verdict.message, evidence,
                   verdict.details)


def _or_share(get: Lookup, th: Mapping[str, float]) -> float | None:
    """The odds-ratio term's share of the total loss, (loss - nll_loss) / loss, as window medians."""
    loss, nll = get(m.LOSS), get(m.NLL_LOSS)
    if loss is None or nll is None:
        return None
    w = int(th["window"])
    lw, nw = loss.window(min(w, len(loss.values))), nll.window(min(w, len(nll.values)))
    if lw is None or nw is None or len(lw[1]) == 0 or len(nw[1]) == 0:
        return None
    total = median(lw[1])
    return (total - median(nw[1])) / total if total > 0 else None


def _over_penalization_verdict(lor: Series, cs: Series, sign: float, th: Mapping[str, float], step: int,
                               st: PenalizationState | None) -> Verdict | None:
    by_trend = _over_penalization_trend(lor, cs, sign, th, step)
    if st is None or th["op_level_drop"] <= 0:
        return by_trend
    return _either(by_trend, _chosen_below_its_best(lor, cs, sign, th, step, st))


def _chosen_below_its_best(lor: Series, cs: Series, sign: float, th: Mapping[str, float], step: int,
                           st: PenalizationState) -> Verdict | None:
    """A drift too slow for a trend window under batch noise (-0.3 nats/token over 300 steps at
    beta 30): the window median of the chosen log-prob has fallen `op_level_drop` below its highest
    level so far while the log odds ratio's window median stands above its level then."""
    w = int(th["window"])
    cw, lw = cs.window(w), lor.window(w)
    if cw is None or lw is None:
        return None
    level, lor_level = sign * median(cw[1]), median(lw[1])
    if st.best == -math.inf and cs.baseline is not None and lor.baseline is not None:
        st.best, st.best_step, st.lor_at_best = sign * cs.baseline, int(cs.steps[0]), lor.baseline
    if level > st.best:
        st.best, st.best_step, st.lor_at_best = level, step, lor_level
    fall, lor_gain = st.best - level, lor_level - st.lor_at_best
    firing = fall > th["op_level_drop"] and lor_gain > 0
    severity = a.CRITICAL if fall > th["op_critical_factor"] * th["op_logp_drop"] + th["op_level_drop"] else a.WARNING
    msg = (f"the chosen responses' log-prob has fallen {fall:.3f} nats/token below its best (step {st.best_step}) "
           "while the log odds ratio kept rising")
    details = (f"window medians: chosen log-prob {level * sign:.3f} at step {step} against a best of "
               f"{st.best * sign:.3f}; log odds ratio {lor_gain:+.2f} since then")
    clear = fall < th["op_level_clear_frac"] * th["op_level_drop"] or lor_gain <= 0
    return Verdict(firing, clear, severity, st.best_step, msg, details=details)


def _over_penalization_trend(lor: Series, cs: Series, sign: float, th: Mapping[str, float], step: int
                             ) -> Verdict | None:

    def judge(w: int) -> Verdict | None:
        lw, cw = lor.window(w), cs.window(w)
        if lw is None or cw is None:
            return None
        tc = _trend(cs, w) if sign > 0 else trend(cw[0], sign * cw[1])
        zc, drop = th["trend_z"], th["op_logp_drop"]
        small_fall = -th["op_clear_frac"] * drop
        if tc.z > -th["op_steady_z"] or tc.change > small_fall:  # chosen log-prob not falling: clear, no second trend
            return Verdict(False, True)
        tl = _trend(lor, w)
        firing = tc.z < -zc and tc.change < -drop and tl.z > th["op_lor_z"] and tl.change > 0
        onset = int(cw[0][np.argmax(_running_mean(sign * cw[1]))]) if firing else int(cw[0][0])
        severity = a.CRITICAL if tc.change < -th["op_critical_factor"] * drop else a.WARNING
        msg = (f"the chosen responses' log-prob has been falling {_steps(onset, step)} while the log odds "
               "ratio grows")
        details = (f"Theil-Sen change: chosen log-prob {tc.change:+.3f} nats/token (Mann-Kendall z={tc.z:+.1f}), "
                   f"log odds ratio {tl.change:+.2f} (z={tl.z:+.1f})")
        clear = tc.change > small_fall or tl.z < th["op_clear_lor_z"]
        return Verdict(firing, clear, severity, onset, msg, details=details)

    return _two_scales(th, judge, lambda: sign * _trend(cs, int(th["window"])).z < -th["op_leans_z"])


ForgettingState = EvalBest  # catastrophic_forgetting's state: the best smoothed eval NLL so far


def catastrophic_forgetting(get: Lookup, th: Mapping[str, float], step: int, st: EvalBest) -> Verdict | None:
    src = _first(get, (m.EVAL_PREFIX + m.NLL_LOSS, m.EVAL_PREFIX + m.PPL_CHOSEN, m.EVAL_PREFIX + m.LOSS))
    if src is None:
        return None
    name, es = src
    level = _eval_level(es, name, st)
    if level is None:
        return None
    _, values, smooth, at = level
    rise = (smooth - st.best) / max(st.best, TINY)
    # The newest eval must stand above the best too: after a short bump the 3-eval median stays up one
    # eval longer than the evals themselves, and that echo must not be the vote that opens the alert.
    newest_rise = (values[-1] - st.best) / max(st.best, TINY)
    firing = (rise > th["forget_rise_frac"] and newest_rise > th["forget_rise_frac"]
              and smooth - st.best > th["forget_noise_k"] * _eval_noise(es, name))
    if firing and rise <= th["forget_sure_frac"]:
        firing = _rising_since_best(es, name, st, th)
    label = "eval NLL" if name != m.EVAL_PREFIX + m.LOSS else "eval loss"
    msg = f"the {label} has risen {rise:.0%} above its best (step {st.best_step})"
    details = f"{smooth:.3f} at step {at} (median of the last evals) against a best of {st.best:.3f} at step {st.best_step}"
    evidence: dict[str, object] = {"metric": name, "value": round(smooth, 4), "step": at, "best": round(st.best, 4),
                                   "best_step": st.best_step, "rise": round(rise, 4)}
    train = _first(get, (m.NLL_LOSS,))
    if not firing and train is not None and (tw := train[1].window(int(th["window"]))) is not None:
        train_nll = median(tw[1])
        gap = (smooth - train_nll) / max(smooth, TINY)
        if gap > th["forget_gap_frac"] and _trend(train[1], int(th["window"])).z < -th["trend_z"]:
            firing = True
            msg = "the eval NLL is drifting away from the train NLL while the train NLL keeps falling"
            details = f"eval NLL {smooth:.3f}, train NLL {train_nll:.3f} ({gap:.0%} of eval) at step {at}"
            evidence.update(train_nll=round(train_nll, 4), gap=round(gap, 4))
    severity = a.CRITICAL if rise > th["forget_critical_factor"] * th["forget_rise_frac"] else a.WARNING
    clear = rise < th["forget_clear_frac"] * th["forget_rise_frac"]
    return Verdict(firing, clear and not firing, severity, st.best_step, msg, evidence, details)


def _rising_since_best(es: Series, name: str, st: EvalBest, th: Mapping[str, float]) -> bool:
    """A moderate rise must also be a trend over the evals since the best (Mann-Kendall).

    On a long noisy plateau the best so far is an extreme value set by chance, and the evals after it
    wander around their mean without a trend; eval NLL that is really climbing again does trend."""
    n = min(int(th["forget_trend_evals"]), sum(1 for s in es.steps if s >= st.best_step) + 1)
    if n < MIN_TREND_EVALS:  # the best is only a few evals old: not the chance minimum of a long plateau
        return True
    win = es.window(n)
    if win is None:
        return False
    values = np.log(np.maximum(win[1], TINY)) if name.endswith(m.PPL_CHOSEN) else win[1]
    return trend(win[0], values).z >= th["forget_trend_z"]


def _eval_noise(es: Series, name: str) -> float:
    """Point-to-point noise of the eval series (robust sd from successive differences, last 10 evals).

    The best eval so far is a minimum over noisy values, so a small held-out set makes any later value
    look like a rise; a rise must also stand clear of this noise."""
    win = es.window(min(EVAL_NOISE_POINTS, len(es.values)))
    if win is None or len(win[1]) < MIN_NOISE_EVALS:
        return 0.0
    values = np.log(np.maximum(win[1], TINY)) if name.endswith(m.PPL_CHOSEN) else win[1]
    return float(MAD_TO_SD * np.median(np.abs(np.diff(values))) / math.sqrt(2))


def format_not_learned(get: Lookup, th: Mapping[str, float], step: int, planned_steps: int | None = None
                       ) -> Verdict | None:
    """The chosen NLL not coming down: stalled near its start (`fnl_level`, falling by less than
    `fnl_min_drop` per window), or, when the run's planned length is known, falling too slowly to end
    below `fnl_end_level` of its start.

    The second rule is the hindsight label's own definition (benchmarks/alerts/label_traces.py: the
    smoothed NLL over the last 50 steps still above 0.6 x its smoothed start) turned into a forecast,
    measured the way the label measures: from the median of the first START_POINTS values, to the
    middle of the last `fnl_end_tail` planned steps, at `fnl_pace_factor` times the window's Theil-Sen
    pace; only on runs planned at least twice that tail (shorter ones the label does not judge either). A run falling 6.7 -> 4.2 nats/token in 150 steps falls by ~10 % of its start per window,
    which the first rule counts as learning; the forecast sees that it will not get there in time."""
    src = _first(get, (m.NLL_LOSS, m.LOGPS_CHOSEN, m.PPL_CHOSEN))
    if src is None or step < th["min_step"]:
        return None
    name, s = src
    win, base = s.window(int(th["window"])), s.baseline
    if win is None or base is None:
        return None
    conv = {m.NLL_LOSS: lambda v: v, m.LOGPS_CHOSEN: lambda v: -v,
            m.PPL_CHOSEN: lambda v: np.log(np.maximum(v, TINY))}[name]
    values, base = conv(win[1]), float(conv(np.array([base]))[0])
    if base <= 0:
        return None
    typical = median(values)
    if typical < th["fnl_nll_floor"]:
        # A model that already predicts its chosen responses this well (a pretrained or SFT'd model on
        # data in its own format) has the format, even when the NLL barely moves from its start.
        return Verdict(False, True, a.WARNING, int(win[0][0]), "the model already predicts the chosen responses well",
                       details=f"chosen NLL {typical:.3f} at step {step}, below {th['fnl_nll_floor']:g} nats/token")
    level = typical / base
    margin = th["fnl_clear_margin"]
    cleared_level = th["fnl_level"] - margin
    # The forecast needs the label's frame: a planned run at least twice its tail (on a 60-step run "the
    # last 50 steps" is the whole run, and those runs are labelled by hand), not yet past its end.
    plan = planned_steps or 0
    forecast = step <= plan and plan >= 2 * th["fnl_end_tail"]
    if level < (min(cleared_level, th["fnl_end_level"] - margin) if forecast else cleared_level):
        # far below its start (and, with a planned length, below the level the run must end under): clear
        return Verdict(False, True, a.WARNING, int(win[0][0]), f"the chosen NLL is down to {level:.0%} of its start",
                       details=f"starting {base:.3f}, step {step}")
    t = _trend(s, int(th["window"])) if name == m.NLL_LOSS else trend(win[0], values)
    level, fall = t.median / base, -t.change / base
    stalled = level > th["fnl_level"] and fall < th["fnl_min_drop"]
    end = math.nan
    if forecast and (first := s.start) is not None and (start := float(conv(np.array([first]))[0])) > 0:
        # The faster of the two windows' paces (a curve that flattens falls slower in a long window), so
        # only a run that is behind at both is called behind; carried linearly to the middle of the
        # label's last fnl_end_tail steps (the median the label takes), never back from a centre past it.
        slope = t.slope
        if name == m.NLL_LOSS and (lt := s.trend(int(th["long_window"]))) is not None:
            slope = min(slope, lt.slope)
        target = plan - th["fnl_end_tail"] / 2
        centre = (win[0][0] + win[0][-1]) / 2
        end = (t.median + th["fnl_pace_factor"] * min(slope, 0.0) * max(target - centre, 0.0)) / start
    behind = end > th["fnl_end_level"]  # False when there is no forecast (NaN)
    # A significantly rising NLL is another pitfall (over-penalization, forgetting), not an unlearned format.
    firing = (stalled or behind) and t.z <= th["trend_z"]
    if firing and _writes_the_answers_and_still_learns(get, th, step):
        return Verdict(False, False, a.WARNING, int(win[0][0]))  # not judged yet: neither firing nor clear
    late = step >= th["fnl_critical_after"] * th["min_step"]
    severity = a.CRITICAL if level > th["fnl_critical_level"] and late else a.WARNING
    if stalled or not behind:
        msg = (f"the chosen NLL has barely fallen: still {level:.0%} of its starting value at step {step}, so the "
               "model is not learning the chosen responses")
    else:
        msg = (f"the chosen NLL is falling too slowly: {level:.0%} of its starting value at step {step}, on course "
               f"for about {end:.0%} of it over the last {th['fnl_end_tail']:g} of the {planned_steps} planned steps, "
               "so the model will not have learned the chosen responses by the end of the run")
    details = (f"median {t.median:.3f} against {base:.3f} at the start, falling {fall:.1%} of that per "
               f"{int(th['window'])} points ({_fmt(t)})")
    forecast = not math.isnan(end)
    if forecast:
        details += (f"; at {th['fnl_pace_factor']:g} x its pace it ends near {end:.0%} of its start "
                    f"(needs < {th['fnl_end_level']:.0%})")
    clear = level < cleared_level or fall > th["fnl_clear_factor"] * th["fnl_min_drop"]
    if forecast:
        clear = clear and end < th["fnl_end_level"] - margin
    evidence: dict[str, object] = {"metric": name, "start": round(base, 4), "level": round(level, 4),
                                   "fall_per_window": round(fall, 4)}
    if forecast:
        evidence.update(planned_steps=planned_steps, forecast_end_level=round(end, 4))
    return Verdict(firing, clear, severity, int(win[0][0]), msg, evidence if firing else {}, details)


def _running_mean(values: np.ndarray, k: int = ONSET_SMOOTH_POINTS) -> np.ndarray:
    """Centred k-point running mean (edges padded): where a trend's turning point is, cheaply."""
    padded = np.pad(values, k // 2, mode="edge")
    return np.convolve(padded, np.ones(k) / k, mode="valid")
