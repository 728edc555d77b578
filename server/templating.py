"""Jinja2 templates and static-file locations for the HTML pages.

Templates and static assets are found by server.assets (the repository's folders, or a wheel's copies);
the app factory mounts `STATIC_DIR` at `/static` under the name "static", so templates link
assets with `url_for('static', path=...)`. Protocol constants the page's JS needs are template
globals, rendered into data- attributes, so the JS holds no copy of them.

Plotly (the vendored strict bundle, static/vendor/) is served with a year of `immutable` caching, so its
URL carries its version (`plotly_version`): after an upgrade, browsers fetch the new file.
"""

from __future__ import annotations

from fastapi.templating import Jinja2Templates

from orpo_dash.number_format import format_exact, format_number
from orpo_dash.protocol import (
    BROWSER_FINAL_CLOSE_CODES,
    RUN_STATUSES,
    TERMINAL_STATUSES,
)
from server.assets import PLOTLY_JS_VERSION, STATIC_DIR, TEMPLATES_DIR
from server.page_rights import NEEDS_MEMBER, page_rights

__all__ = ["STATIC_DIR", "TEMPLATES_DIR", "templates"]  # the app factory mounts STATIC_DIR from here

templates = Jinja2Templates(directory=TEMPLATES_DIR)
# common.js reads these from its own <script data-final-close-codes> (templates/base.html).
templates.env.globals["final_close_codes"] = " ".join(map(str, BROWSER_FINAL_CLOSE_CODES))
templates.env.globals["plotly_version"] = PLOTLY_JS_VERSION
# The status filter, the stop button and common.js (data-terminal-statuses) follow the protocol's
# lists, so a new status shows up everywhere.
templates.env.globals["RUN_STATUSES"] = RUN_STATUSES
templates.env.globals["TERMINAL_STATUSES"] = TERMINAL_STATUSES
# Controls the caller's role cannot use are drawn disabled, with the reason (server/page_rights.py).
templates.env.globals["page_rights"] = page_rights
templates.env.globals["NEEDS_MEMBER"] = NEEDS_MEMBER
# Numbers in templates follow the same rule as Dash.fmtNum in common.js (orpo_dash/number_format.py):
# `{{ value|num }}` for display, `{{ value|exact }}` where the value must read back the same.
templates.env.filters["num"] = format_number
templates.env.filters["exact"] = format_exact
