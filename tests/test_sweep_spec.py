"""Sweep axis text and its expansion into validated run configs (orpo_dash/sweep_spec.py)."""

from __future__ import annotations

import math

import pytest

from orpo_dash.sweep_spec import MAX_SWEEP_RUNS, SweepSpecError, expand, numeric_fields, parse_axis, run_name


def _errors(axes: dict[str, str], base: dict | None = None, **options) -> dict[str, str]:  # type: ignore[no-untyped-def,type-arg]
    with pytest.raises(SweepSpecError) as refused:
        expand(base or {}, axes, **options)
    return refused.value.errors


def test_a_list_keeps_its_values_in_order() -> None:
    axis = parse_axis("beta", "0.05, 0.1,0.25 , 0.5")
    assert axis.kind == "list" and axis.values == (0.05, 0.1, 0.25, 0.5)


def test_a_linear_range_is_evenly_spaced_and_ends_on_its_bounds() -> None:
    axis = parse_axis("learning_rate", "1e-6..5e-6, 4 values")
    assert axis.kind == "linear"
    assert axis.values[0] == 1e-6 and axis.values[-1] == 5e-6
    assert [round(v * 3e6, 9) for v in axis.values] == [3, 7, 11, 15]  # steps of 4/3 e-6


def test_a_log_range_is_evenly_spaced_in_log() -> None:
    axis = parse_axis("learning_rate", "log 5e-6..5e-5, 4 values")
    assert axis.kind == "log" and axis.values[0] == 5e-6 and axis.values[-1] == 5e-5
    ratios = [b / a for a, b in zip(axis.values, axis.values[1:], strict=False)]
    assert all(math.isclose(r, 10 ** (1 / 3), rel_tol=1e-9) for r in ratios)


def test_integer_fields_round_and_drop_repeats() -> None:
    assert parse_axis("batch_size", "1..4, 7 values").values == (1, 2, 3, 4)  # 1, 1.5, 2, 2.5... half up
    assert parse_axis("max_steps", "10, 10.2, 20.5").values == (10, 21)
    assert all(isinstance(v, int) for v in parse_axis("max_steps", "log 1..1000, 4 values").values)
    assert parse_axis("max_steps", "log 1..1000, 4 values").values == (1, 10, 100, 1000)


def test_only_numeric_fields_are_axes() -> None:
    fields = numeric_fields()
    assert fields["beta"] is float and fields["max_steps"] is int and fields["batch_size"] is int
    assert "seed" not in fields and "lora" not in fields and "dtype" not in fields


@pytest.mark.parametrize(("field", "text", "words"), [
    ("beta", "a, b", "'a' is not a number"),
    ("beta", "1..2", "how many values"),
    ("beta", "2..1, 3 values", "write the smaller bound first"),
    ("learning_rate", "log 0..1e-3, 3 values", "positive bounds"),
    ("beta", "0.1..0.5, 1 values", "2 to"),
    ("beta", "0.1...0.5", "not a range"),
    ("beta", "", "needs values"),
    ("beta", "nan, 1", "finite"),
    ("dtype", "1, 2", "not a numeric field"),
    ("betta", "1, 2", "did you mean 'beta'"),
    ("seed", "1, 2", "use seeds"),
    ("lambda", "0.1, 0.2", "write the axis as beta"),
])
def test_bad_axis_text_names_the_axis_and_the_fix(field: str, text: str, words: str) -> None:
    errors = _errors({field: text})
    assert list(errors) == [f"axes.{field}"] and words in errors[f"axes.{field}"], errors


def test_grid_is_the_cartesian_product_repeated_per_seed() -> None:
    plan = expand({"seed": 7}, {"beta": "0.1, 0.2", "learning_rate": "1e-5..3e-5, 3 values"}, seeds=2)
    assert plan.run_count == 12 and len(plan.settings) == 6
    assert plan.settings[0].values == {"beta": 0.1, "learning_rate": 1e-5}
    assert plan.settings[-1].values == {"beta": 0.2, "learning_rate": 3e-5}
    for setting in plan.settings:
        assert [config.seed for config in setting.configs] == [7, 8]
        assert all(config.beta == setting.values["beta"] for config in setting.configs)


def test_random_mode_is_reproducible_from_its_seed_and_stays_in_range() -> None:
    axes = {"beta": "0.05..0.5", "learning_rate": "log 1e-6..1e-4", "batch_size": "2, 4, 8"}
    first = expand({}, axes, mode="random", count=20, random_seed=3)
    again = expand({}, axes, mode="random", count=20, random_seed=3)
    other = expand({}, axes, mode="random", count=20, random_seed=4)
    values = [setting.values for setting in first.settings]
    assert values == [setting.values for setting in again.settings]
    assert values != [setting.values for setting in other.settings]
    assert len(values) == 20
    for one in values:
        assert 0.05 <= one["beta"] <= 0.5 and 1e-6 <= one["learning_rate"] <= 1e-4 and one["batch_size"] in (2, 4, 8)
    # Log-uniform: about half the samples below the geometric middle (1e-5), not ~9% as uniform would give.
    many = expand({}, {"learning_rate": "log 1e-6..1e-4"}, mode="random", count=400, random_seed=0)
    below = sum(setting.values["learning_rate"] < 1e-5 for setting in many.settings)
    assert 150 < below < 250


def test_random_mode_needs_a_count() -> None:
    assert "count" in _errors({"beta": "0.1..0.5"}, mode="random")


def test_every_generated_config_is_validated_and_errors_name_the_axis() -> None:
    errors = _errors({"beta": "0.1, 0, 0.5"})
    assert "beta must be greater than 0" in errors["axes.beta"] and "beta=0" in errors["axes.beta"]
    # A combination only: max_prompt_length from the axis against the base max_length.
    errors = _errors({"max_prompt_length": "32, 300"}, {"max_length": 256})
    assert "max_prompt_length must be smaller than max_length" in errors["axes.max_prompt_length"]
    # A field no axis touches, broken by one: named in the config.
    errors = _errors({"max_length": "64, 512"}, {"max_prompt_length": 100})
    assert "config.max_prompt_length" in errors


def test_base_config_errors_name_the_config_field() -> None:
    errors = _errors({"beta": "0.1"}, {"max_length": -1, "dtpye": "float32"})
    assert "max_length must be greater than 0" in errors["config.max_length"]
    assert "did you mean 'dtype'" in errors["config.dtpye"]


def test_too_many_runs_is_refused_before_anything_is_expanded() -> None:
    errors = _errors({"beta": "0.01..1, 100 values", "learning_rate": "log 1e-6..1e-3, 100 values"})
    assert f"at most {MAX_SWEEP_RUNS}" in errors["axes"] and "10000 runs" in errors["axes"]
    errors = _errors({"beta": "0.01..1, 100 values"}, seeds=6)
    assert "600 runs" in errors["seeds"]
    assert "seeds" in _errors({"beta": "0.1"}, seeds=0)
    assert "axes" in _errors({})


def test_run_names_say_the_setting_and_seed() -> None:
    assert run_name("beta sweep", {"beta": 0.1, "learning_rate": 1e-05}, 42) == "beta sweep · beta=0.1 lr=1e-05 seed=42"
    assert len(run_name("x" * 300, {"beta": 0.1}, 1)) == 200
