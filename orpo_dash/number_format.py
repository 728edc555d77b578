"""How every page, message and form shows a number, so one value reads the same everywhere.

A learning rate of 2e-5 used to appear as "2.00e-5" (runs list), "0.00002" (compare), "2e-05" (form
default, Python's repr) and 0.005 beside it as "0.005": four spellings of one kind of value. The rule,
shared with `Dash.fmtNum` in static/js/common.js (tests/pages/test_number_format.py runs both on one
table of cases):

- magnitudes below 1e-3 or from 1e5 up are written in scientific notation, mantissa without trailing
  zeros and exponent without "+" or leading zeros: 2e-5, 1.5e-6, 1.23e6;
- the rest in plain decimals: 0.005, 14.9, 0.1235;
- `digits` significant digits, ties rounded away from zero (JavaScript's toPrecision/toExponential);
  `digits=None` keeps every digit needed to read the same float back (form inputs, config values),
  and writes whole numbers below 1e15 out in full (max_steps 200000, not 2e5);
- None and NaN are "—"; infinities "∞" and "-∞".
"""

from __future__ import annotations

import math
from decimal import ROUND_HALF_UP, Decimal

SCIENTIFIC_BELOW = 1e-3
SCIENTIFIC_FROM = 1e5
WHOLE_IN_FULL_BELOW = 1e15
MISSING = "—"


def format_number(value: float | int | None, digits: int | None = 4) -> str:
    """`value` by the rule above; `digits` significant digits, or None for the exact shortest form."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    if isinstance(value, bool):
        return str(value).lower()
    number = float(value)
    if math.isinf(number):
        return "∞" if number > 0 else "-∞"
    if number == 0:
        return "0"
    if digits is None and number.is_integer() and abs(number) < WHOLE_IN_FULL_BELOW:
        return str(int(number))
    sign, digit_text, exponent = _significant(number, digits)
    if SCIENTIFIC_BELOW <= abs(number) < SCIENTIFIC_FROM:
        return sign + _plain(digit_text, exponent)
    mantissa = digit_text[0] + ("." + digit_text[1:] if len(digit_text) > 1 else "")
    return f"{sign}{mantissa}e{exponent}"


def format_exact(value: float | int | None) -> str:
    """Every digit needed to read the same number back: what a form input holds."""
    return format_number(value, None)


def _significant(number: float, digits: int | None) -> tuple[str, str, int]:
    """(sign, significant digits without trailing zeros, decimal exponent of the first digit)."""
    exact = Decimal(repr(number)) if digits is None else Decimal(number)  # repr: the shortest round trip
    sign = "-" if exact < 0 else ""
    exact = abs(exact)
    if digits is not None:
        # Round at the `digits`-th significant digit, half away from zero like JavaScript.
        quantum = Decimal(1).scaleb(exact.adjusted() - digits + 1)
        exact = exact.quantize(quantum, rounding=ROUND_HALF_UP)
    text = "".join(map(str, exact.as_tuple().digits)).rstrip("0") or "0"
    return sign, text, exact.adjusted()


def _plain(digit_text: str, exponent: int) -> str:
    if exponent < 0:
        return "0." + "0" * (-exponent - 1) + digit_text
    whole, fraction = digit_text[: exponent + 1], digit_text[exponent + 1:]
    whole = whole.ljust(exponent + 1, "0")
    return whole + ("." + fraction if fraction else "")
