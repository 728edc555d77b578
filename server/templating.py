"""Jinja2 templates and static-file locations for the HTML pages.

Templates live in the repository-root `templates/` folder and static assets in `static/`;
the app factory mounts `STATIC_DIR` at `/static` under the name "static", so templates link
assets with `url_for('static', path=...)`. Protocol constants the page's JS needs are template
globals, rendered into data- attributes, so the JS holds no copy of them.

Plotly is served from the installed package with a year of `immutable` caching, so its URL carries
the package version (`plotly_version`): after an upgrade, browsers fetch the new file.
"""

from __future__ import annotations

from pathlib import Path

import plotly
from fastapi.templating import Jinja2Templates

from orpo_dash.protocol import BROWSER_FINAL_CLOSE_CODES

REPO_ROOT = Path(__file__).resolve().parent.parent
TEMPLATES_DIR = REPO_ROOT / "templates"
STATIC_DIR = REPO_ROOT / "static"

templates = Jinja2Templates(directory=TEMPLATES_DIR)
# common.js reads these from its own <script data-final-close-codes> (templates/base.html).
templates.env.globals["final_close_codes"] = " ".join(map(str, BROWSER_FINAL_CLOSE_CODES))
templates.env.globals["plotly_version"] = plotly.__version__
