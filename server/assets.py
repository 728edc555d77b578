"""Where the dashboard's non-Python files live: Jinja2 templates, static files, Alembic migrations.

A source checkout (and an editable install) uses the repository's top-level folders. A built wheel
carries copies as data files under <prefix>/share/orpo-dash/ (pyproject.toml's data-files), found
through sysconfig, so `pip install orpo-dash` serves every page without the repository.
"""

from __future__ import annotations

import sysconfig
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
INSTALLED_ROOT = Path(sysconfig.get_path("data")) / "share" / "orpo-dash"


def _assets_root() -> Path:
    for root in (REPO_ROOT, INSTALLED_ROOT):
        if (root / "templates" / "base.html").is_file() and (root / "migrations" / "env.py").is_file():
            return root
    raise RuntimeError(
        f"orpo-dash: templates and migrations not found in {REPO_ROOT} or {INSTALLED_ROOT}; "
        "reinstall the package (pip install --force-reinstall orpo-dash)"
    )


ASSETS_ROOT = _assets_root()
TEMPLATES_DIR = ASSETS_ROOT / "templates"
STATIC_DIR = ASSETS_ROOT / "static"
MIGRATIONS_DIR = ASSETS_ROOT / "migrations"
ALEMBIC_INI = ASSETS_ROOT / "alembic.ini"
# plotly.js's "strict" bundle, vendored from npm (static/vendor/README.md): unlike the standard bundle it
# draws its WebGL traces (parcoords) without `new Function`, which our CSP refuses. Its URL carries the
# version because it is cached as immutable: change both together when upgrading.
PLOTLY_JS = STATIC_DIR / "vendor" / "plotly-strict.min.js"
PLOTLY_JS_VERSION = "4.1.1"
