"""Jinja2 templates and static-file locations for the HTML pages.

Templates live in the repository-root `templates/` folder and static assets in `static/`;
the app factory mounts `STATIC_DIR` at `/static` under the name "static", so templates link
assets with `url_for('static', path=...)`.

Plotly is served from the installed package with a year of `immutable` caching, so its URL carries
the package version (`plotly_version`): after an upgrade, browsers fetch the new file.
"""

from __future__ import annotations

from pathlib import Path

import plotly
from fastapi.templating import Jinja2Templates

REPO_ROOT = Path(__file__).resolve().parent.parent
TEMPLATES_DIR = REPO_ROOT / "templates"
STATIC_DIR = REPO_ROOT / "static"

templates = Jinja2Templates(directory=TEMPLATES_DIR)
templates.env.globals["plotly_version"] = plotly.__version__
