"""Advice fitted to the run: what to try, read from the run's own config and its numbers.

advise(kind, numbers, config) -> Advice(text, change). The text names the run's settings and the
evidence ("beta is 10 (the paper uses 0.1): try 1"); `change` is the one config change to try, as data
({"field": "beta", "from": 10, "to": 1}), or None when no config change is the right fix (the run
already follows the usual advice: then the text says what else to check) or when the config is not
known (`orpo-dash diagnose` on a metrics file).

Two rules hold for every kind: a change never suggests the value the run already has, and advice
never tells a run to do what it already does (no "reduce beta; the paper uses 0.1" to a run at 0.1).
Each cause is blamed only on evidence: the learning rate when the grad norm spiked, the loss blew
up, or the rate is above what ORPO fine-tuning uses; beta only when the odds-ratio term is a real
share of the loss. tests/diagnostics/test_advice.py applies every change to a range of configs and
validates the result against RunConfig.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from orpo_dash import metric_names as m
from orpo_dash.config_advice import BETA_ADVICE_ABOVE, FULL_FINETUNE_LR_ABOVE, LORA_LR_ABOVE, PAPER_BETA
from orpo_dash.diagnostics import alerts as a
from orpo_dash.run_config import RunConfig

# Evidence that the learning rate is the cause.
GRAD_SPIKE_FACTOR = 10.0  # a grad norm peak this many times its window median is a spike
LOSS_BLOWUP_FACTOR = 2.0  # a loss peak this many times its starting level is a blow-up
LOSS_START_POINTS = 3  # the starting loss is the median of the first this many points
# Evidence about beta: the odds-ratio term's share of the total loss, (loss - nll_loss) / loss.
OR_SHARE_NEGLIGIBLE = 0.05  # below this, beta cannot be what moves the loss or the chosen log-prob
OR_SHARE_DOMINANT = 0.5  # above this (at beta >= BETA_ADVICE_ABOVE), the SFT term barely counts
SHARE_POINTS = 20  # the share is the median over the last this many steps with all three metrics

# What to try.
LR_CUT = 10.0  # lower a learning rate that blew up tenfold
BETA_CUT = 10.0  # lower a beta that over-penalizes tenfold, but not below the paper's
LR_TOO_LOW = {False: 1e-6, True: 1e-5}  # (lora) below this nothing moves within a run
LR_TO_RAISE_TO = {False: 2e-5, True: 2e-4}  # (lora) the form's default; a usual LoRA rate
PAPER_LR = 8e-6  # the paper's highest full fine-tuning rate (5e-6 to 8e-6)
FORGET_LR_ABOVE = 2 * PAPER_LR  # full fine-tuning above this drifts faster than the paper's runs
WARMUP_RATIO = 0.1  # suggested in the text when a run that blew up had no warmup
SAFE_MAX_GRAD_NORM = 1.0
SIGNIFICANT_DIGITS = 3

# Metrics the engine keeps for advice only (beyond what the detectors read).
CONTEXT_METRICS = (m.LEARNING_RATE, m.GRAD_NORM, m.LOSS, m.NLL_LOSS, m.OR_LOSS)
_DEFAULTS: dict[str, Any] = RunConfig().model_dump(mode="json")


@dataclass(frozen=True)
class Advice:
    text: str
    change: dict[str, Any] | None = None  # {"field": name, "from": current value, "to": suggested value}


def apply_change(config: Mapping[str, Any], change: Mapping[str, Any]) -> dict[str, Any]:
    """The config with a suggested change applied (validate it with RunConfig.model_validate)."""
    return {**config, change["field"]: change["to"]}


def fmt(value: float) -> str:
    """A number as people write it in a config: 2e-3, 0.05, 10 (not 0.002 or 10.0)."""
    if value == 0 or not math.isfinite(value):
        return str(value)
    if value == int(value) and abs(value) < 1e6:
        return str(int(value))  # 5000, not 5e+03
    if 1e-2 <= abs(value) < 1e3:
        return f"{value:.{SIGNIFICANT_DIGITS}g}"
    mantissa, exponent = f"{value:.{SIGNIFICANT_DIGITS - 1}e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def _rounded(value: float) -> float:
    return float(f"{value:.{SIGNIFICANT_DIGITS}g}")


# ----- the run's numbers, from the engine's recent windows -----

class _Recent(Protocol):
    """What advice reads from a metric series (orpo_dash.diagnostics.detectors.Series)."""

    @property
    def steps(self) -> Any: ...
    @property
    def values(self) -> Any: ...
    @property
    def head(self) -> list[float]: ...


def run_numbers(get: Callable[[str], _Recent | None]) -> dict[str, float]:
    """The numbers advice reads, from the engine's bounded windows (the last long_window points)."""
    out: dict[str, float] = {}
    if (lr := get(m.LEARNING_RATE)) is not None and lr.values:
        out["learning_rate"] = float(lr.values[-1])
    if (grad := get(m.GRAD_NORM)) is not None and grad.values:
        values = list(grad.values)
        peak = max(range(len(values)), key=values.__getitem__)
        out["grad_norm_peak"], out["grad_norm_peak_step"] = values[peak], float(grad.steps[peak])
        out["grad_norm_median"] = sorted(values)[len(values) // 2]
    if (loss := get(m.LOSS)) is not None and loss.values:
        start = sorted(loss.head[:LOSS_START_POINTS])
        out["loss_start"] = start[len(start) // 2]
        values = list(loss.values)
        peak = max(range(len(values)), key=values.__getitem__)
        out["loss_peak"], out["loss_peak_step"] = values[peak], float(loss.steps[peak])
        nll, orl = get(m.NLL_LOSS), get(m.OR_LOSS)
        if nll is not None and orl is not None:
            out.update(_or_term(loss, nll, orl))
    return out


def _or_term(loss: _Recent, nll: _Recent, orl: _Recent) -> dict[str, float]:
    """The odds-ratio term's share of the loss, and the beta the metrics imply (loss = nll + beta * or_loss)."""
    by_step_nll, by_step_or = dict(zip(nll.steps, nll.values, strict=True)), dict(zip(orl.steps, orl.values, strict=True))
    shares, betas = [], []
    for step, total in list(zip(loss.steps, loss.values, strict=True))[-SHARE_POINTS:]:
        if step in by_step_nll and step in by_step_or and total > 0:
            term = total - by_step_nll[step]
            shares.append(max(0.0, term) / total)
            if by_step_or[step] > 1e-6:
                betas.append(term / by_step_or[step])
    out: dict[str, float] = {}
    if shares:
        out["or_share"] = sorted(shares)[len(shares) // 2]
    if betas:
        out["beta_from_metrics"] = sorted(betas)[len(betas) // 2]
    return out


# ----- reading the config and the numbers together -----

class _Run:
    def __init__(self, numbers: Mapping[str, Any], config: Mapping[str, Any] | None) -> None:
        self.n = {k: float(v) for k, v in numbers.items()
                  if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
        self.known = config is not None
        self.cfg = {**_DEFAULTS, **(config or {})}
        self.lora = bool(self.cfg["lora"]) if self.known else False
        logged_lr = self.n.get("learning_rate")
        self.lr: float | None = float(self.cfg["learning_rate"]) if self.known else logged_lr
        beta = self.n.get("beta_from_metrics")
        self.beta: float | None = float(self.cfg["beta"]) if self.known else (_rounded(beta) if beta else None)
        self.share = self.n.get("or_share")

    def change(self, field: str, to: Any) -> dict[str, Any] | None:
        """A change only where the config is known, and never to the value the run already has."""
        if not self.known or self.cfg[field] == to:
            return None
        return {"field": field, "from": self.cfg[field], "to": to}

    def lr_text(self) -> str:
        return "learning rate " + (fmt(self.lr) if self.lr is not None else "(not logged)")

    def beta_text(self) -> str:
        if self.beta is None:
            return "beta (unknown)"
        return f"beta {fmt(self.beta)}" + (" (the paper's value)" if math.isclose(self.beta, PAPER_BETA) else "")

    def blow_up(self) -> list[str]:
        """What the numbers show of an optimizer overshooting (a grad-norm spike, a loss blow-up), whatever
        the learning rate."""
        n, found = self.n, []
        peak, median = n.get("grad_norm_peak"), n.get("grad_norm_median")
        if peak is not None and median and peak >= GRAD_SPIKE_FACTOR * median:
            found.append(f"grad norm {fmt(peak)} at step {int(n['grad_norm_peak_step'])} "
                         f"({peak / median:.0f}x its median {fmt(median)})")
        start, top = n.get("loss_start"), n.get("loss_peak")
        if start and top is not None and start > 0 and top >= LOSS_BLOWUP_FACTOR * start:
            found.append(f"loss {fmt(start)} -> {fmt(top)} by step {int(n['loss_peak_step'])}")
        return found

    def lr_trouble(self) -> str | None:
        """The evidence that the learning rate is too high, as words that follow "the learning rate X",
        or None."""
        if self.too_low_lr():
            return None  # a rate this low cannot be what blew up
        found = self.blow_up()
        ceiling = LORA_LR_ABOVE if self.lora else FULL_FINETUNE_LR_ABOVE
        above = self.lr is not None and self.lr > ceiling
        usual = f"above {fmt(ceiling)}, the top of the usual range for {'LoRA' if self.lora else 'full fine-tuning'}"
        if found:
            return f" with {', '.join(found)}" + (f" is {usual}" if above else "") + ": the optimizer overshoots"
        if above:  # no overshoot seen yet, only the setting
            return f" is {usual}: the optimizer is likely to overshoot"
        return None

    def lower_lr(self, evidence: str, lead: str = "") -> Advice:
        to = _rounded(self.lr / LR_CUT) if self.lr is not None else None
        warmup = self.known and not self.cfg["warmup_steps"] and not self.cfg["warmup_ratio"]
        tried = f"try {fmt(to)}" if to is not None else f"lower it about {LR_CUT:.0f}x"
        text = (f"{lead}{'the' if lead else 'The'} {self.lr_text()}{evidence}. {tried.capitalize()}"
                + (f" and warmup (warmup_ratio {WARMUP_RATIO:g})" if warmup else "") + ".")
        return Advice(text, self.change("learning_rate", to) if to is not None else None)

    def too_low_lr(self) -> bool:
        return self.lr is not None and self.lr < LR_TOO_LOW[self.lora]

    def raise_lr(self, what: str) -> Advice:
        to = LR_TO_RAISE_TO[self.lora]
        return Advice(f"The {self.lr_text()} is far too low to move the model ({what}): try {fmt(to)}.",
                      self.change("learning_rate", to))

    def settings(self, verdict: str) -> str:
        """'The learning rate 2e-5 and beta 0.1 <verdict>', or, when neither is known (a metrics file
        without them), that the numbers do not point at either (never a verdict on unknown settings)."""
        if self.lr is None and self.beta is None:
            return "Nothing in the logged numbers points at the learning rate or beta"
        return f"The {self.lr_text()} and {self.beta_text()} {verdict}"

    def share_text(self, joint: str = " and ") -> str:
        return "" if self.share is None else f"{joint}the odds-ratio term is {self.share:.0%} of the loss"

    def beta_matters(self) -> bool:
        """Whether beta can be the cause: above the paper's, and its term not a negligible share of the
        loss (the OR term's gradient weight is about beta * or_loss, so its share is what it pushes with)."""
        return (self.beta is not None and self.beta > PAPER_BETA * (1 + 1e-9)
                and (self.share is None or self.share >= OR_SHARE_NEGLIGIBLE))

    def lower_beta(self, why: str) -> Advice:
        assert self.beta is not None
        to = max(PAPER_BETA, _rounded(self.beta / BETA_CUT))
        return Advice(f"beta is {fmt(self.beta)} (the paper uses {PAPER_BETA:g}){self.share_text()}: {why}. Try {fmt(to)}.",
                      self.change("beta", to))


# ----- one rule per kind -----

def _loss_rising(r: _Run) -> Advice:
    if (evidence := r.lr_trouble()) is not None:
        return r.lower_lr(evidence)
    if r.beta_matters():
        return r.lower_beta("the preference penalty fights the SFT objective")
    seen = r.blow_up()  # with a learning rate too low to be their cause
    lr_note = f"too low to cause the {', '.join(seen)}" if seen else "no grad-norm spike, no blow-up"
    return Advice(
        f"Neither the {r.lr_text()} ({lr_note}) nor {r.beta_text()} explains the rise"
        f"{r.share_text(' (')}{')' if r.share is not None else ''}: compare the eval loss, check whether the data changes partway (a second epoch, unshuffled or "
        "mixed sources) and whether the schedule raises the learning rate (warmup longer than intended).")


def _over_penalization(r: _Run) -> Advice:
    if r.beta_matters():
        return r.lower_beta("the penalty lowers the chosen response's probability to push the rejected one down")
    if (evidence := r.lr_trouble()) is not None:
        return r.lower_lr(evidence, lead=f"The chosen log-prob falls from the learning rate, not from {r.beta_text()}: ")
    return Advice(
        f"With {r.beta_text()}{r.share_text(', where ')}, a lower beta will not help. Check whether chosen and rejected "
        "responses are near-duplicates (pushing the rejected one down then lowers the chosen one too), and the "
        "chosen responses' chat template.")


def _log_odds_flat(r: _Run) -> Advice:
    if (evidence := r.lr_trouble()) is not None:
        return r.lower_lr(evidence, lead="Do not raise the learning rate: ")
    if r.too_low_lr():
        return r.raise_lr("the log odds ratio cannot rise")
    if r.beta is not None and r.beta < PAPER_BETA / 2:
        return Advice(f"beta is {fmt(r.beta)}, well below the paper's {PAPER_BETA:g}: the preference term barely "
                      f"counts in the loss. Try {PAPER_BETA:g}.", r.change("beta", PAPER_BETA))
    return Advice(
        f"{r.settings('are in the usual range')}: check the data. Are chosen and rejected "
        "swapped (a negative log odds ratio says so), nearly identical, or is the preference too subtle for this "
        "model? Then train longer.")


def _format_not_learned(r: _Run) -> Advice:
    if (evidence := r.lr_trouble()) is not None:
        return r.lower_lr(evidence)
    if r.too_low_lr():
        return r.raise_lr("the chosen NLL cannot fall")
    if (r.beta is not None and r.beta >= BETA_ADVICE_ABOVE and r.share is not None and r.share >= OR_SHARE_DOMINANT):
        return r.lower_beta("the SFT term that teaches the format barely counts")
    return Advice(
        f"{r.settings('are not what holds the format back')}: check that the chosen responses "
        "are high quality and well-formatted (empty, truncated or noisy ones, a wrong chat template), and that "
        "max_length does not cut them off.")


def _catastrophic_forgetting(r: _Run) -> Advice:
    if (evidence := r.lr_trouble()) is not None:
        return r.lower_lr(evidence)
    keep = " Keep the checkpoint from before the eval NLL rose (save_every)."
    epochs = float(r.cfg["num_epochs"])
    if r.known and r.cfg["max_steps"] is None and epochs > 1:
        to = max(1.0, float(math.floor(epochs / 2)))
        return Advice(f"num_epochs is {fmt(epochs)}: each epoch revisits the same pairs, and nothing (no reference "
                      f"model) holds the policy near where it started. Try {fmt(to)}.{keep}",
                      r.change("num_epochs", to))
    if r.beta is not None and r.beta >= BETA_ADVICE_ABOVE:
        return r.lower_beta("a strong penalty drifts the policy from sensible outputs")
    if not r.lora and r.lr is not None and r.lr > FORGET_LR_ABOVE:
        return Advice(f"The {r.lr_text()} is above the paper's 5e-6 to {fmt(PAPER_LR)} for full fine-tuning: try "
                      f"{fmt(PAPER_LR)}.{keep}", r.change("learning_rate", PAPER_LR))
    return Advice(f"{r.settings('are moderate already')}: stop at the best eval step rather "
                  f"than change them, and check that the eval split is drawn like the training data.{keep}")


def _non_finite(r: _Run) -> Advice:
    resume = " Resume from the last checkpoint with finite metrics."
    if r.known and r.cfg["dtype"] == "float16":
        return Advice("dtype is float16, whose range the odds-ratio term can overflow: try bfloat16 (float32 where "
                      f"bfloat16 is not supported).{resume}", r.change("dtype", "bfloat16"))
    if r.known and not r.cfg["max_grad_norm"]:
        return Advice(f"Gradient clipping is off (max_grad_norm 0): try {SAFE_MAX_GRAD_NORM:g}.{resume}",
                      r.change("max_grad_norm", SAFE_MAX_GRAD_NORM))
    if (evidence := r.lr_trouble()) is not None:
        return r.lower_lr(evidence)
    settings = (f"dtype {r.cfg['dtype']}, clipping at {fmt(float(r.cfg['max_grad_norm']))} and {r.lr_text()} are safe "
                "settings" if r.known else "No overshoot shows in the numbers")
    return Advice(f"{settings}: look for an empty or all-padding response in the data "
                  f"(a mean over zero tokens) or a corrupted checkpoint.{resume}")


_RULES: dict[str, Callable[[_Run], Advice]] = {
    a.LOSS_RISING: _loss_rising,
    a.OVER_PENALIZATION: _over_penalization,
    a.LOG_ODDS_FLAT: _log_odds_flat,
    a.FORMAT_NOT_LEARNED: _format_not_learned,
    a.CATASTROPHIC_FORGETTING: _catastrophic_forgetting,
    a.NON_FINITE: _non_finite,
}


def advise(kind: str, numbers: Mapping[str, Any], config: Mapping[str, Any] | None) -> Advice:
    """Advice for an alert of `kind`, from the run's numbers (run_numbers() plus the verdict's
    evidence) and its config (None when unknown: text from the numbers only, no change)."""
    rule = _RULES.get(kind)
    if rule is None:  # a kind added elsewhere before its rule here: its generic advice, no change
        return Advice(a.ADVICE.get(kind, ""))
    return rule(_Run(numbers, config))
