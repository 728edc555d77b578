"""The dashboard works offline: Plotly is served from here, cached for good, and no page links a CDN."""

from __future__ import annotations

import re

import plotly


def test_plotly_is_served_locally_with_long_caching(client) -> None:  # type: ignore[no-untyped-def]
    response = client.get("/vendor/plotly.min.js")
    assert response.status_code == 200
    assert "immutable" in response.headers["cache-control"] and "max-age=31536000" in response.headers["cache-control"]
    assert response.text.lstrip().startswith("/**") and "plotly.js v" in response.text[:200]
    for path in ("/", "/runs/new", "/compare?runs="):
        html = client.get(path).text
        assert "cdn" not in html.lower() and "https://" not in html, path


def test_plotly_url_carries_the_package_version(client) -> None:  # type: ignore[no-untyped-def]
    """The file is cached as immutable for a year, so only a new URL brings an upgrade to browsers."""
    html = client.get("/compare?runs=").text
    src = re.search(r'<script src="([^"]*plotly[^"]*)"', html)
    assert src is not None, html
    assert src.group(1).endswith(f"/vendor/plotly.min.js?v={plotly.__version__}")
    assert client.get(src.group(1)).status_code == 200  # url_for gives an absolute URL
