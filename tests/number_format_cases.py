"""One table of (value, digits, expected text) that both number formatters must reproduce: Python's
orpo_dash.number_format.format_number (tests/test_number_format.py) and the pages' Dash.fmtNum
(tests/pages/test_number_format.py). digits None is the exact form a form input holds."""

from __future__ import annotations

CASES: list[tuple[float | int | None, int | None, str]] = [
    # The four spellings of learning rates, now one each.
    (2e-5, 4, "2e-5"), (0.00002, 4, "2e-5"), (2e-5, None, "2e-5"), (0.005, 4, "0.005"), (5e-3, None, "0.005"),
    (8e-6, 4, "8e-6"), (1.5e-5, 4, "1.5e-5"), (1.23456e-5, 4, "1.235e-5"), (1.23456e-5, None, "1.23456e-5"),
    (1e-8, None, "1e-8"), (2.5e-5, 3, "2.5e-5"), (-3e-4, 4, "-3e-4"),
    # Plain decimals between 1e-3 and 1e5, rounded to significant digits.
    (0.1, 4, "0.1"), (14.9, 4, "14.9"), (14.94999, 4, "14.95"), (0.12345, 4, "0.1235"), (1234, 3, "1230"),
    (0.001, 4, "0.001"), (1, 4, "1"), (100, None, "100"), (-0.5, 4, "-0.5"), (0.85, 3, "0.85"),
    # Ties round away from zero, as JavaScript's toPrecision does (Python's round() would go to even).
    (1.0625, 4, "1.063"), (-1.0625, 4, "-1.063"),
    # Large magnitudes.
    (123456, 4, "1.235e5"), (123456.5, None, "1.234565e5"), (200000, None, "200000"), (1e5, 4, "1e5"), (99999.5, 4, "100000"),
    # Not numbers.
    (None, 4, "—"), (float("nan"), 4, "—"), (0, 4, "0"), (0.0, None, "0"),
]
