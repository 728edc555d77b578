"""Alert records, the fixed alert kinds, their advice, and the default thresholds.

Defaults were derived from the labelled trace collection in benchmarks/alerts/ (see
docs/alerts.md, "Where the defaults come from"), except the clear/critical/lean factors, which are
set by hand; every one can be overridden per run through RunConfig.alert_thresholds or
`orpo-dash diagnose --threshold KEY=VALUE`.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

LOG_ODDS_FLAT = "log_odds_flat"
LOSS_RISING = "loss_rising"
OVER_PENALIZATION = "over_penalization"
CATASTROPHIC_FORGETTING = "catastrophic_forgetting"
FORMAT_NOT_LEARNED = "format_not_learned"
NON_FINITE = "non_finite"
KINDS = (LOG_ODDS_FLAT, LOSS_RISING, OVER_PENALIZATION, CATASTROPHIC_FORGETTING, FORMAT_NOT_LEARNED, NON_FINITE)

WARNING = "warning"
CRITICAL = "critical"
OPEN = "open"
CLOSED = "closed"

# Advice draws on the ORPO paper (Hong, Lee & Thorne 2024, arXiv 2403.07691).
ADVICE = {
    LOG_ODDS_FLAT: (
        "The model is not learning preferences: check data quality (are chosen and rejected swapped, "
        "or nearly identical?), increase the learning rate, or adjust the penalty weight beta."
    ),
    LOSS_RISING: (
        "The preference penalty may be fighting the SFT objective: reduce the penalty coefficient beta "
        "(and, if the rise followed a learning-rate increase, lower the learning rate)."
    ),
    OVER_PENALIZATION: (
        "The odds-ratio penalty is too strong and the model is turning conservative (it lowers the chosen "
        "response's probability to push the rejected one down): reduce beta; the paper uses 0.1."
    ),
    CATASTROPHIC_FORGETTING: (
        "Without a reference model the policy can drift from sensible outputs: monitor the loss carefully, use a "
        "moderate beta, fewer epochs or a lower learning rate, and prefer the checkpoint from before the rise."
    ),
    FORMAT_NOT_LEARNED: (
        "The model is not learning the response format: ensure chosen responses are high quality and "
        "well-formatted (look for empty, truncated or noisy chosen responses and a wrong chat template), "
        "then check that the learning rate is not too low."
    ),
    NON_FINITE: (
        "Training produced NaN/Inf values and further steps are meaningless: with float16 switch to bfloat16 "
        "or use dynamic loss scaling, lower the learning rate, keep gradient clipping on (max_grad_norm), "
        "and resume from the last checkpoint with finite metrics."
    ),
}

# name -> (default, meaning). Window lengths count logged points, not optimizer steps.
THRESHOLDS: dict[str, tuple[float, str]] = {
    "window": (40, "points in each trend window (Theil-Sen slope + Mann-Kendall test)"),
    "check_every": (10, "the detectors run once per this many steps (the first finalized step of each block)"),
    "long_window": (60, "points in the long trend window of loss_rising and over_penalization (slow drifts)"),
    "trend_z": (3.0, "Mann-Kendall |z| a trend needs to count as significant (one-sided p ~ 0.0013)"),
    "open_after": (1, "consecutive evaluations (check_every steps apart) a trend condition must hold to open"),
    "forget_open_after": (2, "catastrophic_forgetting: consecutive evaluations (one per new eval point) to open"),
    "close_after": (5, "consecutive evaluations a condition must be clear before an alert closes"),
    "min_step": (60, "no verdict on 'not learning' kinds (log_odds_flat, format_not_learned) before this step"),
    "lor_flat_level": (0.3, "log_odds_flat: median log odds ratio below this counts as 'near zero'"),
    "lor_min_rise": (0.4, "log_odds_flat: ...unless it rises by at least this much over the window"),
    "lor_rising_z": (2.0, "log_odds_flat: a low log odds ratio still rising with this Mann-Kendall z over long_window..."),
    "lor_slow_rise": (0.08, "log_odds_flat: ...by at least this much is a slow learner, not flat..."),
    "lor_grace_step": (120, "log_odds_flat: ...until this step; after it, only the level and lor_min_rise count"),
    "lor_sure_frac": (0.7, "log_odds_flat: a median below this fraction of lor_flat_level is clearly flat and judged from min_step; one between it and lor_flat_level is borderline..."),
    "lor_borderline_frac": (0.8, "log_odds_flat: ...and, unless falling significantly, judged only from this fraction of the run's planned length (a slow climber can still pass 0.5)"),
    "lor_drop": (1.0, "log_odds_flat: a significant fall of at least this much over the window also fires..."),
    "lor_drop_frac": (0.3, "log_odds_flat: ...and of at least this fraction of its window median"),
    "lor_clear_level": (1.5, "log_odds_flat: clear once the median is above this many times lor_flat_level..."),
    "lor_clear_rise": (1.5, "log_odds_flat: ...or it rises by this many times lor_min_rise over the window..."),
    "lor_clear_z_frac": (0.5, "log_odds_flat: ...and is not falling with a Mann-Kendall z below -(this fraction of trend_z)"),
    "loss_rise_frac": (0.1, "loss_rising: significant rise over the window, as a fraction of the median loss"),
    "loss_falling_z": (1.0, "loss_rising: a loss falling with Mann-Kendall z below -this is clear (no slope needed)"),
    "loss_clear_frac": (0.25, "loss_rising: clear when the rise is under this fraction of the rise that fires..."),
    "loss_clear_z": (1.0, "loss_rising: ...and its Mann-Kendall z is under this"),
    "loss_leans_z": (0.5, "loss_rising: when the short window does not fire, a z above this makes it judge long_window too"),
    "op_logp_drop": (0.05, "over_penalization: fall of mean chosen log-prob (nats/token) over the window"),
    "op_lor_z": (1.0, "over_penalization: ...while the log odds ratio rises with at least this Mann-Kendall z"),
    "op_level_drop": (0.15, "over_penalization: window median of the chosen log-prob this far below its best (nats/token), log odds ratio above its level then"),
    "op_steady_z": (1.0, "over_penalization: a chosen log-prob whose Mann-Kendall z is above -this is not falling: clear"),
    "op_clear_frac": (0.25, "over_penalization: clear when the chosen log-prob falls by less than this fraction of op_logp_drop..."),
    "op_clear_lor_z": (1.0, "over_penalization: ...or the log odds ratio's Mann-Kendall z is under this"),
    "op_leans_z": (0.5, "over_penalization: when the short window does not fire, a chosen log-prob z below -this makes it judge long_window too"),
    "op_critical_factor": (4, "over_penalization: critical when the chosen log-prob falls by more than this many op_logp_drop (beyond op_level_drop, by level)"),
    "op_level_clear_frac": (0.5, "over_penalization: the level rule clears when the chosen log-prob is less than this fraction of op_level_drop below its best"),
    "forget_rise_frac": (0.05, "catastrophic_forgetting: eval NLL above its best by this fraction"),
    "forget_noise_k": (0.75, "catastrophic_forgetting: ...and by this many times the eval series' point-to-point noise"),
    "forget_sure_frac": (0.08, "catastrophic_forgetting: a rise above this fraction needs no trend; a smaller one..."),
    "forget_trend_evals": (8, "catastrophic_forgetting: ...must trend up over the evals since the best (at most this many)..."),
    "forget_trend_z": (1.5, "catastrophic_forgetting: ...with at least this Mann-Kendall z"),
    "forget_gap_frac": (0.5, "catastrophic_forgetting: eval NLL above train NLL by this fraction of eval NLL"),
    "forget_critical_factor": (4, "catastrophic_forgetting: critical when eval NLL rises above its best by this many times forget_rise_frac"),
    "forget_clear_frac": (0.5, "catastrophic_forgetting: clear when eval NLL is less than this fraction of forget_rise_frac above its best"),
    "fnl_level": (0.8, "format_not_learned: NLL still above this fraction of its starting value..."),
    "fnl_min_drop": (0.05, "format_not_learned: ...and falling by less than this fraction of it per window"),
    "fnl_nll_floor": (1.0, "format_not_learned: chosen NLL below this (nats/token, perplexity < 2.7) is learned, whatever its trend"),
    "fnl_end_level": (0.6, "format_not_learned: with the run's planned length known, fire when the chosen NLL is on course to end above this fraction of its start (median of its first 21 points): label_traces.py's definition..."),
    "fnl_end_tail": (50, "format_not_learned: ...where 'end' is the middle of the last this many planned steps (the label's tail)..."),
    "fnl_pace_factor": (1.0, "format_not_learned: ...carried there at this many times its current pace (the faster Theil-Sen slope of window and long_window)"),
    "fnl_clear_margin": (0.1, "format_not_learned: clear when the NLL is this fraction of its start below fnl_level..."),
    "fnl_clear_factor": (2, "format_not_learned: ...or falls by this many times fnl_min_drop per window"),
    "fnl_critical_level": (0.95, "format_not_learned: critical when the NLL is still above this fraction of its start..."),
    "fnl_critical_after": (2, "format_not_learned: ...at or after this many times min_step"),
    "answers_nll": (1.5, "log_odds_flat, format_not_learned: a chosen NLL starting below this (nats/token) means the model already writes the answers (SFT'd, or pretrained on data in its format)..."),
    "answers_grace_step": (120, "...so, while its log odds ratio median is above 0, neither kind judges it before this step..."),
    "answers_nll_z": (2.0, "...nor while its chosen NLL still falls with this Mann-Kendall z over long_window"),
    "nonfinite_clear_steps": (10, "non_finite: steps with only finite values before the alert closes"),
    "live_frac": (0.33, "a run planned shorter than these defaults assume: min_step, the grace steps and window shrink to this fraction of its planned length (long_window to half of it)"),
    "min_window": (12, "...but a window never shrinks below this many points"),
    "blowup_factor": (3.0, "loss_rising (blow-up): median of the last blowup_points losses this many times the median before them..."),
    "blowup_points": (3, "...over this many consecutive logged points (one bad batch is not a blow-up)..."),
    "blowup_grad_factor": (10.0, "...with a grad norm among them this many times its median before: the learning rate is the cause"),
    "eval_rise_frac": (0.15, "loss_rising: eval total loss (median of the last 3 evals, and the newest) this fraction above its best eval"),
    "op_min_or_share": (0.01, "over_penalization: the OR term (loss - nll_loss, window median) must be at least this share of the loss; below it the penalty cannot be what pulls the chosen log-prob down"),
}
DEFAULT_THRESHOLDS: dict[str, float] = {k: float(v[0]) for k, v in THRESHOLDS.items()}


def resolve_thresholds(overrides: Mapping[str, float] | None) -> dict[str, float]:
    """Defaults with per-run overrides applied; unknown keys are an error, not silently ignored."""
    merged = dict(DEFAULT_THRESHOLDS)
    for key, value in (overrides or {}).items():
        if key not in merged:
            close = difflib.get_close_matches(key, sorted(merged), n=1, cutoff=0.75)
            fix = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(sorted(merged))}"
            raise ValueError(f"unknown alert threshold {key!r}: {fix} (docs/alerts.md lists them)")
        merged[key] = float(value)
        if not math.isfinite(merged[key]):
            raise ValueError(f"alert threshold {key!r} must be a finite number, got {value!r}")
    for key in ("window", "check_every", "open_after", "forget_open_after", "close_after", "nonfinite_clear_steps"):
        if merged[key] < 1 or merged[key] != int(merged[key]):
            raise ValueError(f"alert threshold {key!r} must be a positive whole number, got {merged[key]}")
    if merged["long_window"] != int(merged["long_window"]) or merged["long_window"] < merged["window"]:
        raise ValueError(f"alert threshold 'long_window' must be a whole number >= window, got {merged['long_window']:g}")
    if merged["forget_trend_evals"] < 4 or merged["forget_trend_evals"] != int(merged["forget_trend_evals"]):
        raise ValueError("alert threshold 'forget_trend_evals' must be a whole number of at least 4 evaluations, "
                         f"got {merged['forget_trend_evals']:g}")
    if merged["blowup_points"] < 1 or merged["blowup_points"] != int(merged["blowup_points"]):
        raise ValueError(f"alert threshold 'blowup_points' must be a positive whole number, got {merged['blowup_points']:g}")
    if not 0 < merged["live_frac"] <= 1:
        raise ValueError(f"alert threshold 'live_frac' must be in (0, 1], got {merged['live_frac']:g}")
    if merged["min_window"] < 8 or merged["min_window"] != int(merged["min_window"]):
        raise ValueError(f"alert threshold 'min_window' must be a whole number of at least 8 points, got {merged['min_window']:g}")
    if merged["window"] < 8:
        raise ValueError(f"alert threshold 'window' must be at least 8 points, got {merged['window']:g}")
    return merged


# Steps and windows that shrink with a run's planned length (see for_planned_length).
_STEP_THRESHOLDS = ("min_step", "lor_grace_step", "answers_grace_step")


def for_planned_length(th: Mapping[str, float], planned_steps: int | None,
                       keep: Collection[str] = ()) -> dict[str, float]:
    """Thresholds for a run planned to take `planned_steps` optimizer steps (None: unknown, unchanged).

    The defaults judge "not learning" from step 60 on 40-point windows, i.e. after the end of a 60-step
    run. A run too short for min_step to fall within its first `live_frac` gets every step count capped
    at `live_frac` of its planned length and its windows shrunk to match (never below `min_window`
    points; long_window to half the run), so a 60-step run gets its verdict by step 20. Longer runs are
    judged exactly as before. Thresholds in `keep` (set by the user) are never changed."""
    out = dict(th)
    if not planned_steps or planned_steps <= 0 or planned_steps * th["live_frac"] >= th["min_step"]:
        return out
    cap = th["live_frac"] * planned_steps
    scaled = {key: min(th[key], max(th["check_every"], cap)) for key in _STEP_THRESHOLDS}
    scaled["window"] = float(min(th["window"], max(th["min_window"], int(cap))))
    scaled["long_window"] = float(min(th["long_window"], max(scaled["window"], int(planned_steps / 2))))
    out.update({k: v for k, v in scaled.items() if k not in keep})
    if out["long_window"] < out["window"]:
        out["long_window"] = out["window"]
    return out


@dataclass(frozen=True)
class Alert:
    """One alert state change.

    `state` is "open" when the alert opens (or escalates: the same kind re-sent as open with a higher
    severity) and "closed" when its condition has cleared at `step`. `onset_step` is where the evidence
    starts; `step` is where the change was decided. `evidence` holds the numbers behind it (metric values
    and their steps, the `cause` it points at, and the kinds it `explains`: while it is open those do not
    open, since their advice would treat a symptom of this cause). `advice` is fitted to the run
    (advice.py); `suggested_change` is the one config change to try ({"field", "from", "to"}), None when
    no config change is right or the config is unknown. `message` is a plain sentence ("the log odds
    ratio has stayed near zero for the last 40 steps"); `details` holds the statistics behind it.
    """

    kind: str
    severity: str
    onset_step: int
    step: int
    message: str
    advice: str
    state: str = OPEN
    evidence: dict[str, object] = field(default_factory=dict)
    suggested_change: dict[str, Any] | None = None
    details: str = ""  # the statistics behind `message` (a plain sentence), shown second

    def to_dict(self) -> dict[str, object]:
        return asdict(self)
