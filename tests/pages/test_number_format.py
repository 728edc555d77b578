"""The pages' Dash.fmtNum gives the same text as the Python formatter, case for case (issue 20 point 12)."""

from __future__ import annotations

import pytest

from orpo_dash.number_format import format_number
from tests.number_format_cases import CASES

pytestmark = pytest.mark.browser


def test_fmtnum_in_the_browser_matches_the_python_formatter(live_server, page) -> None:  # type: ignore[no-untyped-def]
    page.goto(live_server.url + "/")
    values = [[value, digits] for value, digits, _ in CASES]
    shown = page.evaluate("(cases) => cases.map(([v, d]) => Dash.fmtNum(v, d))", values)
    expected = [text for _, _, text in CASES]
    assert shown == expected
    assert shown == [format_number(value, digits) for value, digits, _ in CASES]
