"""Accessible basics: every form control has a label, the new-run form works from the keyboard alone,
and the chart palette stays distinguishable under the common colour-vision deficiencies."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

# Controls whose accessible name is empty: no <label for>, no wrapping <label>, no aria-label(ledby).
UNLABELLED_CONTROLS = """() => [...document.querySelectorAll('input, select, textarea')]
  .filter(el => el.type !== 'hidden')
  .filter(el => {
    const fromLabels = [...(el.labels || [])].map(l => l.textContent.trim()).join('');
    const fromAria = (el.getAttribute('aria-label') || '').trim();
    const fromIds = (el.getAttribute('aria-labelledby') || '').split(/\\s+/).filter(Boolean)
      .map(id => (document.getElementById(id) || {}).textContent || '').join('').trim();
    return !(fromLabels || fromAria || fromIds);
  })
  .map(el => el.id || el.name || el.outerHTML.slice(0, 80))"""


@pytest.mark.browser
def test_every_form_control_has_a_label(live_server, page, tiny_dataset_file) -> None:  # type: ignore[no-untyped-def]
    from tests.pages.conftest import register_run

    run_id, _ = register_run(live_server, tiny_dataset_file, name="labelled")
    page.goto(live_server.url + "/runs/new")
    controls = page.locator("#run-form input, #run-form select, #run-form textarea").count()
    assert controls > 30  # the whole RunConfig, collapsed sections included
    assert page.evaluate(UNLABELLED_CONTROLS) == []
    for path in ("/", f"/runs/{run_id}", f"/compare?runs={run_id}"):
        page.goto(live_server.url + path)
        page.wait_for_load_state("networkidle")
        assert page.evaluate(UNLABELLED_CONTROLS) == [], path


@pytest.mark.browser
def test_keyboard_alone_reaches_start_and_enter_submits(live_server, page, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    page.goto(live_server.url + "/runs/new")
    # Set without focusing it, so that tabbing starts from the top of the page.
    page.eval_on_selector("#f-dataset", "(el, path) => { el.value = path; }", str(tmp_path / "missing.jsonl"))
    seen: list[str] = []
    for _ in range(150):
        page.keyboard.press("Tab")
        focused = page.evaluate("document.activeElement.id || document.activeElement.tagName")
        seen.append(focused)
        if focused == "submit-btn":
            break
    assert seen[-1] == "submit-btn", f"Tab never reached Start run; focus went through {seen}"
    assert seen[0] == "A"  # the skip link comes first
    assert "f-name" in seen and "f-beta" in seen  # on the way it passed the fields, in page order
    assert seen.index("f-name") < seen.index("f-beta")
    page.keyboard.press("Enter")
    error = page.locator("#error-dataset")
    error.wait_for(state="visible")  # submitted: the server's verdict sits next to the field
    assert "missing.jsonl" in error.inner_text() or "not found" in error.inner_text().lower()
    assert page.url.endswith("/runs/new")


# --- colour ---------------------------------------------------------------------------------------
# Machado, Oliveira & Fernandes (2009) simulation matrices at full severity, applied in linear RGB.
CVD = {
    "protanopia": ((0.152286, 1.052583, -0.204868), (0.114503, 0.786281, 0.099216), (-0.003882, -0.048116, 1.051998)),
    "deuteranopia": ((0.367322, 0.860646, -0.227968), (0.280085, 0.672501, 0.047413), (-0.011820, 0.042940, 0.968881)),
    "tritanopia": ((1.255528, -0.076749, -0.178779), (-0.078411, 0.930809, 0.147602), (0.004733, 0.691367, 0.303900)),
}
MIN_DELTA_E = 15.0  # CIE76; ~2.3 is "just noticeable", 15+ reads as a different line at a glance
OKABE_ITO = {"#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#000000", "#F0E442"}


def _linear(hex_colour: str) -> list[float]:
    channels = [int(hex_colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    return [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]


def _lab(rgb: list[float]) -> tuple[float, float, float]:
    rgb = [min(1.0, max(0.0, c)) for c in rgb]
    xyz = [sum(m * c for m, c in zip(row, rgb, strict=True)) for row in
           ((0.4124, 0.3576, 0.1805), (0.2126, 0.7152, 0.0722), (0.0193, 0.1192, 0.9505))]
    xyz = [v / w for v, w in zip(xyz, (0.95047, 1.0, 1.08883), strict=True)]
    f = [v ** (1 / 3) if v > 0.008856 else 7.787 * v + 16 / 116 for v in xyz]
    return 116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])


def _simulate(matrix, rgb: list[float]) -> list[float]:  # type: ignore[no-untyped-def]
    return [sum(m * c for m, c in zip(row, rgb, strict=True)) for row in matrix]


def _palette() -> list[str]:
    source = (REPO_ROOT / "static" / "js" / "charts.js").read_text()
    match = re.search(r"const PALETTE = \[([^\]]*)\]", source)
    assert match, "charts.js no longer defines PALETTE"
    return re.findall(r'"(#[0-9A-Fa-f]{6})"', match.group(1))


def test_chart_palette_is_okabe_ito_and_distinguishable_under_colour_blindness() -> None:
    palette = _palette()
    assert set(palette) == OKABE_ITO
    identity = ((1, 0, 0), (0, 1, 0), (0, 0, 1))
    for name, matrix in {"normal vision": identity, **CVD}.items():
        labs = [_lab(_simulate(matrix, _linear(c))) for c in palette]
        for (i, a), (j, b) in itertools.combinations(enumerate(labs), 2):
            delta = sum((x - y) ** 2 for x, y in zip(a, b, strict=True)) ** 0.5
            assert delta >= MIN_DELTA_E, f"{palette[i]} and {palette[j]} look alike under {name} (ΔE {delta:.1f})"


def test_alert_severity_colours_differ_under_colour_blindness() -> None:
    source = (REPO_ROOT / "static" / "js" / "run_detail.js").read_text()
    critical = re.search(r'critical: \{ colour: "(#[0-9A-F]{6})"', source).group(1)  # type: ignore[union-attr]
    warning = re.search(r'warning: \{ colour: "(#[0-9A-F]{6})"', source).group(1)  # type: ignore[union-attr]
    for name, matrix in CVD.items():
        a, b = _lab(_simulate(matrix, _linear(critical))), _lab(_simulate(matrix, _linear(warning)))
        assert sum((x - y) ** 2 for x, y in zip(a, b, strict=True)) ** 0.5 >= MIN_DELTA_E, name
