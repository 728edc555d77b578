"""Advice fitted to the run (orpo_dash/diagnostics/advice.py): it reads the run's config and numbers,
never tells a run to do what it already does, and every suggested change is a valid run config."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest

from orpo_dash.diagnostics import KINDS, AlertEngine, diagnose
from orpo_dash.diagnostics import alerts as a
from orpo_dash.diagnostics.advice import advise, apply_change, fmt
from orpo_dash.run_config import RunConfig

BETAS = (0.01, 0.1, 0.5, 10.0, 100.0)
LEARNING_RATES = (1e-9, 5e-7, 2e-5, 2e-3, 1.0)
SHAPES: tuple[dict[str, Any], ...] = (
    {"lora": False}, {"lora": True}, {"dtype": "float16"}, {"max_grad_norm": 0.0},
    {"num_epochs": 10_000.0}, {"num_epochs": 3.0, "max_steps": 100}, {"warmup_ratio": 0.1},
)
NUMBERS: tuple[dict[str, float], ...] = (
    {},
    {"grad_norm_peak": 220.0, "grad_norm_peak_step": 14, "grad_norm_median": 1.3},  # a grad-norm spike
    {"loss_start": 1.7, "loss_peak": 20.0, "loss_peak_step": 9},  # a loss blow-up
    {"or_share": 0.01}, {"or_share": 0.6},
)


def _configs() -> list[dict[str, Any]]:
    return [{**RunConfig().model_dump(mode="json"), "beta": beta, "learning_rate": lr, **shape}
            for beta, lr, shape in itertools.product(BETAS, LEARNING_RATES, SHAPES)]


def test_every_suggested_change_validates_against_the_run_config_schema() -> None:
    changes = 0
    for config, kind, numbers in itertools.product(_configs(), KINDS, NUMBERS):
        fitted = advise(kind, numbers, config)
        assert fitted.text, (kind, config, numbers)
        change = fitted.change
        if change is None:
            continue
        changes += 1
        assert set(change) == {"field", "from", "to"}
        assert change["from"] == config[change["field"]], (kind, change)
        assert change["to"] != change["from"], f"suggests what the run already has: {kind} {change}"
        fixed = RunConfig.model_validate(apply_change(config, change))
        assert getattr(fixed, change["field"]) == change["to"]
        json.dumps(change)  # stored in a JSON column and sent to browsers as is
    assert changes > 500  # the loop really exercised changes, not only "no change"


@pytest.mark.parametrize("kind", KINDS)
def test_no_config_means_no_change_but_still_advice(kind: str) -> None:
    fitted = advise(kind, {"learning_rate": 5e-3, "grad_norm_peak": 300.0, "grad_norm_peak_step": 12,
                           "grad_norm_median": 1.0}, None)
    assert fitted.change is None and fitted.text


def test_beta_far_above_the_paper_is_named_and_lowered() -> None:
    fitted = advise(a.OVER_PENALIZATION, {"or_share": 0.4}, {"beta": 10.0})
    assert fitted.text.startswith("beta is 10 (the paper uses 0.1)") and "Try 1." in fitted.text
    assert fitted.change == {"field": "beta", "from": 10.0, "to": 1.0}


def test_learning_rate_blow_up_names_rate_grad_norm_and_step_and_suggests_a_tenth_and_warmup() -> None:
    numbers = {"grad_norm_peak": 220.0, "grad_norm_peak_step": 14, "grad_norm_median": 1.3, "learning_rate": 1.9e-3}
    fitted = advise(a.LOSS_RISING, numbers, {"learning_rate": 2e-3})
    assert "learning rate 2e-3 with grad norm 220 at step 14" in fitted.text
    assert "Try 2e-4 and warmup" in fitted.text
    assert fitted.change == {"field": "learning_rate", "from": 2e-3, "to": 2e-4}


def test_a_run_at_the_papers_beta_is_never_told_to_reduce_beta() -> None:
    """The issue's case: after an lr blow-up, over_penalization said "reduce beta; the paper uses 0.1"
    to a run whose beta was 0.1, with an OR term of 0.001-0.02 against an NLL of 2-9."""
    for numbers in NUMBERS:
        for config in (c for c in _configs() if c["beta"] <= 0.1):
            for kind in KINDS:
                fitted = advise(kind, numbers, config)
                assert not (fitted.change and fitted.change["field"] == "beta" and fitted.change["to"] < config["beta"])
                assert "reduce beta" not in fitted.text.lower() and "lower beta will" not in fitted.text.replace(
                    "a lower beta will not help", "")
    blown = {"loss_start": 1.0, "loss_peak": 9.5, "loss_peak_step": 18, "or_share": 0.005}
    fitted = advise(a.OVER_PENALIZATION, blown, {"beta": 0.1, "learning_rate": 2e-5})
    assert "not from beta 0.1 (the paper's value)" in fitted.text
    assert fitted.change == {"field": "learning_rate", "from": 2e-5, "to": 2e-6}
    quiet = advise(a.OVER_PENALIZATION, {"or_share": 0.005}, {"beta": 0.1, "learning_rate": 2e-5})
    assert quiet.change is None and "a lower beta will not help" in quiet.text and "near-duplicates" in quiet.text


def test_a_flat_log_odds_ratio_after_a_blow_up_is_not_told_to_raise_the_learning_rate() -> None:
    numbers = {"loss_start": 1.7, "loss_peak": 20.0, "loss_peak_step": 8}
    fitted = advise(a.LOG_ODDS_FLAT, numbers, {"learning_rate": 5e-3})
    assert fitted.text.startswith("Do not raise the learning rate")
    assert fitted.change == {"field": "learning_rate", "from": 5e-3, "to": 5e-4}
    slow = advise(a.LOG_ODDS_FLAT, {}, {"learning_rate": 1e-9})
    assert slow.change == {"field": "learning_rate", "from": 1e-9, "to": 2e-5}
    usual = advise(a.LOG_ODDS_FLAT, {}, {"learning_rate": 2e-5, "beta": 0.1})
    assert usual.change is None and "check the data" in usual.text


def test_non_finite_fixes_the_setting_that_is_unsafe_and_otherwise_points_at_the_data() -> None:
    assert advise(a.NON_FINITE, {}, {"dtype": "float16"}).change == {"field": "dtype", "from": "float16", "to": "bfloat16"}
    assert advise(a.NON_FINITE, {}, {"max_grad_norm": 0.0}).change == {"field": "max_grad_norm", "from": 0.0, "to": 1.0}
    safe = advise(a.NON_FINITE, {}, {"dtype": "bfloat16", "learning_rate": 2e-5})
    assert safe.change is None and "bfloat16" not in safe.text.replace("dtype bfloat16", "")


def test_numbers_read_like_a_config() -> None:
    assert [fmt(v) for v in (2e-3, 2e-4, 0.05, 10.0, 1.0, 8e-6, 0.1, 220.0, 5000.0, 1e4, 1234.5, 2.5e6)] == [
        "2e-3", "2e-4", "0.05", "10", "1", "8e-6", "0.1", "220", "5000", "10000", "1.23e3", "2.5e6"]


def _blow_up_then_flat(steps: int = 60) -> dict[str, list[tuple[int, float]]]:
    """The issue's lr 5e-3 run, roughly: the loss climbs 1.7 -> ~20 within 10 steps and stays high,
    a grad-norm spike at step 12, the log odds ratio stuck near zero."""
    series: dict[str, list[tuple[int, float]]] = {}
    for step in range(1, steps + 1):
        loss = 1.7 if step < 8 else 20.0 if step < 20 else 5.0
        point = {"loss": loss + 0.01 * (step % 3), "nll_loss": 0.9 * loss, "or_loss": 0.69,
                 "grad_norm": 220.0 if step == 12 else 1.0, "learning_rate": 5e-3, "log_odds_ratio": 0.01 * (step % 5)}
        for name, value in point.items():
            series.setdefault(name, []).append((step, value))
    return series


def test_the_engine_fits_advice_to_the_config_it_was_given() -> None:
    alerts = [c for c in diagnose(_blow_up_then_flat(), config={"learning_rate": 5e-3}) if c.state == a.OPEN]
    assert alerts, "the trace should raise at least one alert"
    for alert in alerts:
        assert alert.suggested_change == {"field": "learning_rate", "from": 5e-3, "to": 5e-4}, alert
        assert "grad norm 220 at step 12" in alert.advice
    # Without the config (a metrics file): the same reading, no change to apply.
    assert all(c.suggested_change is None and "5e-3" in c.advice for c in diagnose(_blow_up_then_flat()))


def test_a_restored_engine_keeps_the_suggested_change_and_reads_old_states() -> None:
    engine = AlertEngine(config={"learning_rate": 5e-3})
    points = sorted(((s, n, v) for n, pts in _blow_up_then_flat(120).items() for s, v in pts), key=lambda p: p[0])
    opened = [c for c in engine.feed(points[:400]) if c.state == a.OPEN]
    assert opened
    state = json.loads(json.dumps(engine.state()))
    restored = AlertEngine.restored(state, config={"learning_rate": 5e-3})
    assert [x.suggested_change for x in restored.open_alerts()] == [x.suggested_change for x in engine.open_alerts()]
    for saved in state["hysteresis"].values():  # a state saved before alerts carried a change
        if saved["alert"]:
            del saved["alert"]["suggested_change"]
    assert all(x.suggested_change is None for x in AlertEngine.restored(state).open_alerts())


def test_advice_reads_as_sentences_and_never_denies_the_evidence_it_was_given() -> None:
    """A rate above the usual range with no overshoot seen yet is "likely to overshoot" (not "with above
    ..."); a blow-up at a rate too low to cause it is named as such, never "no grad-norm spike"."""
    for config, kind, numbers in itertools.product(_configs(), KINDS, NUMBERS):
        text = advise(kind, numbers, config).text
        assert text[0].isupper() or text.startswith(("beta ", "dtype ", "num_epochs ")), text
        assert " with above " not in text and " with :" not in text, text
        if "grad_norm_peak" in numbers or "loss_peak" in numbers:
            assert "no grad-norm spike" not in text, (kind, config["learning_rate"], text)
    only_high = advise(a.LOG_ODDS_FLAT, {}, {"learning_rate": 5e-3})
    assert only_high.text.startswith("Do not raise the learning rate: the learning rate 5e-3 is above 1e-4")
    assert "likely to overshoot" in only_high.text
    slow_spike = advise(a.LOSS_RISING, NUMBERS[1], {"learning_rate": 1e-9, "beta": 0.1})
    assert "too low to cause the grad norm 220 at step 14" in slow_spike.text and slow_spike.change is None


@pytest.mark.parametrize("kind", [a.LOG_ODDS_FLAT, a.FORMAT_NOT_LEARNED, a.CATASTROPHIC_FORGETTING])
def test_unknown_settings_are_never_called_usual(kind: str) -> None:
    """diagnose on a file that logs neither the learning rate nor beta: no verdict on them."""
    text = advise(kind, {}, None).text
    assert text.startswith("Nothing in the logged numbers points at the learning rate or beta"), text
    assert "(not logged)" not in text and "(unknown)" not in text
