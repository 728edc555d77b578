"""The one number formatter every page and message uses (issue 20 point 12)."""

from __future__ import annotations

import pytest

from orpo_dash.config_advice import advise
from orpo_dash.number_format import format_number
from orpo_dash.run_config import RunConfig
from tests.number_format_cases import CASES


@pytest.mark.parametrize(("value", "digits", "expected"), CASES)
def test_format_number_follows_the_shared_rule(value: float | None, digits: int | None, expected: str) -> None:
    assert format_number(value, digits) == expected


@pytest.mark.parametrize("value", [2e-5, 8e-6, 1.23456789e-7, 0.005, 0.1, 3.14159, 123456.789, 1e-300])
def test_exact_form_reads_back_the_same_float(value: float) -> None:
    assert float(format_number(value, None)) == value


def test_advice_writes_learning_rates_the_way_the_pages_do() -> None:
    advice = advise(RunConfig(learning_rate=5e-3, beta=5))
    assert advice["learning_rate"].startswith("learning_rate 0.005 is high for full fine-tuning (above 1e-4)")
    assert advise(RunConfig(learning_rate=5e-8))["learning_rate"].startswith("learning_rate 5e-8 is too small")
    assert "2e-05" not in str(advise(RunConfig(learning_rate=2e-5, num_epochs=5)))


def test_templates_format_numbers_with_the_same_function() -> None:
    from server.templating import templates

    rendered = templates.env.from_string("{{ 2e-5|num }} {{ 0.005|num }} {{ 1.23456e-5|exact }} {{ none|num }}").render(none=None)
    assert rendered == "2e-5 0.005 1.23456e-5 —"
