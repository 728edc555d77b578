"""docs/alerts.md's threshold table is what users tune from: it must list every threshold with its
real default (a new threshold once sat in the code with no row, or a row kept an old default)."""

from __future__ import annotations

import re
from pathlib import Path

from orpo_dash.diagnostics.alerts import THRESHOLDS

DOC = Path(__file__).parents[2] / "docs" / "alerts.md"


def _documented_defaults() -> dict[str, float]:
    text = DOC.read_text()
    section = text.split("## Thresholds and overrides", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(\w+)` \| ([-0-9.]+) \|", section, flags=re.MULTILINE)
    return {key: float(value) for key, value in rows}


def test_every_threshold_is_documented_with_its_default():
    documented = _documented_defaults()
    assert set(documented) == set(THRESHOLDS), (
        f"missing from docs/alerts.md: {sorted(set(THRESHOLDS) - set(documented))}; "
        f"documented but unknown: {sorted(set(documented) - set(THRESHOLDS))}")
    wrong = {k: (documented[k], THRESHOLDS[k][0]) for k in THRESHOLDS if documented[k] != THRESHOLDS[k][0]}
    assert not wrong, f"docs/alerts.md default vs code: {wrong}"
