"""Settings that walk into a known ORPO pitfall get advice before launch; sensible ones get none."""

from __future__ import annotations

from orpo_dash.config_advice import advise
from orpo_dash.run_config import RunConfig


def test_defaults_and_the_paper_settings_get_no_advice() -> None:
    assert advise(RunConfig()) == {}
    assert advise(RunConfig(beta=0.1, learning_rate=8e-6, lr_scheduler="cosine", warmup_ratio=0.1)) == {}
    assert advise(RunConfig(lora=True, learning_rate=5e-4)) == {}  # LoRA tolerates a higher lr


def test_risky_settings_are_named_with_the_pitfall_and_a_fix() -> None:
    advice = advise(RunConfig(beta=10, learning_rate=1e-3, num_epochs=8))
    assert set(advice) == {"beta", "learning_rate", "num_epochs", "eval_every"}
    assert "100x the paper's 0.1" in advice["beta"] and "over-penalization" in advice["beta"]
    assert "high for full fine-tuning" in advice["learning_rate"]
    assert "catastrophic forgetting" in advice["num_epochs"] and "eval_every" in advice["num_epochs"]
    assert "log odds ratio will stay flat" in advise(RunConfig(learning_rate=1e-9))["learning_rate"]
    assert advise(RunConfig(num_epochs=8, max_steps=50)) == {}  # max_steps bounds the run instead


def test_several_epochs_without_periodic_evaluation_are_told_forgetting_goes_unwatched() -> None:
    advice = advise(RunConfig(num_epochs=2))
    assert list(advice) == ["eval_every"] and "catastrophic_forgetting cannot warn" in advice["eval_every"]
    assert advise(RunConfig(num_epochs=2, eval_every=20)) == {}
    assert advise(RunConfig(num_epochs=2, eval_fraction=0.0)) == {}  # nothing held out to evaluate on
