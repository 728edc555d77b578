#!/usr/bin/env bash
# Set up (if needed), install headless Chromium from Debian packages for the page tests, lint, run every test.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver
  else
    sudo apt-get update -q && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver
  fi
fi
. .venv/bin/activate
# Ray is an extra, never in the default install; the Ray launcher's end-to-end test needs it.
python -c "import ray" 2>/dev/null || python -m pip install -q -e ".[ray]"
# Lint first: a style or import error fails in seconds, not after the suite. mypy runs inside the suite
# (tests/test_types.py), so both gate CI.
python -m ruff check .
exec python -m pytest "$@"
