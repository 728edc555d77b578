"""Run-config errors name the field, the value given and the fix, the same in the API, form and CLI."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from orpo_dash.config_errors import explain
from orpo_dash.run_config import RunConfig


def _explained(raw: dict) -> dict[str, str]:
    with pytest.raises(ValidationError) as caught:
        RunConfig.model_validate(raw)
    return explain(caught.value.errors())


def test_out_of_range_values_name_the_value_given_and_the_default() -> None:
    errors = _explained({"learning_rate": -1e-4, "batch_size": 0})
    assert errors["learning_rate"] == "learning_rate must be greater than 0 (got -0.0001); the default is 2e-5"
    assert errors["batch_size"] == "batch_size must be greater than 0 (got 0); the default is 4"


def test_misspelt_fields_get_a_suggestion_and_unknown_ones_are_named() -> None:
    errors = _explained({"learnig_rate": 1e-5, "lamda": 0.2, "colour": "red"})
    assert errors["learnig_rate"] == "unknown field 'learnig_rate': did you mean 'learning_rate'?"
    assert errors["lamda"] == "unknown field 'lamda': did you mean 'lambda'?"
    assert errors["colour"] == "unknown field 'colour': remove it or check its spelling"


def test_wrong_types_say_what_type_is_expected() -> None:
    errors = _explained({"beta": "abc", "max_steps": 1.5, "lora": "maybe", "dtype": "int8", "model": 7})
    assert errors["beta"].startswith("beta must be a number (got 'abc')")
    assert errors["max_steps"].startswith("max_steps must be a whole number (got 1.5)")
    assert errors["lora"] == "lora must be true or false (got 'maybe')"
    assert errors["dtype"] == "dtype must be one of 'float32', 'bfloat16' or 'float16' (got 'int8')"
    assert errors["model"] == "model must be text (got 7)"


def test_a_prompt_longer_than_the_sequence_is_reported_on_max_prompt_length() -> None:
    errors = _explained({"max_length": 100, "max_prompt_length": 200})
    assert list(errors) == ["max_prompt_length"]
    assert "smaller than max_length" in errors["max_prompt_length"]
    # The default max_prompt_length (128) is checked too, not only a value the user typed.
    assert "got max_prompt_length=128, max_length=64" in _explained({"max_length": 64})["max_prompt_length"]



def test_settings_that_are_not_an_object_say_so() -> None:
    assert _explained([1, 2]) == {"config": "the run settings must be one JSON object of field: value pairs (got list)"}


def test_alert_thresholds_are_checked_at_launch() -> None:
    # The server used to accept any key here and then refuse every metrics batch of the run.
    misspelt = _explained({"alert_thresholds": {"min_stp": 80}})
    assert misspelt == {"alert_thresholds": "alert_thresholds: unknown alert threshold 'min_stp': "
                                             "did you mean 'min_step'? (docs/alerts.md lists them)"}
    assert "must be a positive whole number" in _explained({"alert_thresholds": {"window": 2.5}})["alert_thresholds"]
    assert "must be a finite number" in _explained({"alert_thresholds": {"trend_z": float("inf")}})["alert_thresholds"]
    assert RunConfig.model_validate({"alert_thresholds": {"min_step": 80}}).alert_thresholds == {"min_step": 80.0}
