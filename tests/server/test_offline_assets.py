"""The dashboard works offline: Plotly is served from here, cached for good, and no page links a CDN.
The Plotly served is the vendored strict bundle (static/vendor/README.md), which needs no 'unsafe-eval'."""

from __future__ import annotations

import hashlib
import re

from server.assets import PLOTLY_JS, PLOTLY_JS_VERSION, STATIC_DIR
from server.web_security import CONTENT_SECURITY_POLICY


def test_plotly_is_served_locally_with_long_caching(client) -> None:  # type: ignore[no-untyped-def]
    response = client.get("/vendor/plotly.min.js")
    assert response.status_code == 200
    assert "immutable" in response.headers["cache-control"] and "max-age=31536000" in response.headers["cache-control"]
    assert response.text.lstrip().startswith("/**") and f"plotly.js (strict - minified) v{PLOTLY_JS_VERSION}" in response.text[:200]
    for path in ("/", "/runs/new", "/compare?runs="):
        html = client.get(path).text
        assert "cdn" not in html.lower() and "https://" not in html, path


def test_plotly_url_carries_the_bundle_version(client) -> None:  # type: ignore[no-untyped-def]
    """The file is cached as immutable for a year, so only a new URL brings an upgrade to browsers."""
    html = client.get("/compare?runs=").text
    src = re.search(r'<script src="([^"]*plotly[^"]*)"', html)
    assert src is not None, html
    assert src.group(1).endswith(f"/vendor/plotly.min.js?v={PLOTLY_JS_VERSION}")
    assert client.get(src.group(1)).status_code == 200  # url_for gives an absolute URL


def test_vendored_plotly_is_the_recorded_strict_bundle_with_its_licence() -> None:
    """The file, its header, the version in its URL and static/vendor/README.md agree: an upgrade that
    forgets one of them fails here, not in a browser that keeps the old file cached for a year."""
    readme = (STATIC_DIR / "vendor" / "README.md").read_text()
    header = PLOTLY_JS.read_bytes()[:200].decode()
    assert f"plotly.js (strict - minified) v{PLOTLY_JS_VERSION}\n" in header
    assert f"plotly.js {PLOTLY_JS_VERSION}, strict bundle" in readme
    assert f"plotly.js-strict-dist-min@{PLOTLY_JS_VERSION}" in readme
    assert f"sha256 `{hashlib.sha256(PLOTLY_JS.read_bytes()).hexdigest()}`" in readme
    assert "MIT License" in (STATIC_DIR / "vendor" / "plotly-strict.LICENSE.txt").read_text()


def test_the_content_security_policy_never_allows_eval() -> None:
    """The reason for the strict bundle: the policy stays without 'unsafe-eval' (or 'wasm-unsafe-eval')."""
    assert "script-src 'self';" in CONTENT_SECURITY_POLICY
    assert "eval" not in CONTENT_SECURITY_POLICY
