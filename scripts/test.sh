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
# The MLflow import's live test runs a real `mlflow server`, from its own venv: full mlflow pins packages
# (pyarrow, pandas, scikit-learn) that do not fit ours. Without it that test skips, saying why.
if [ -z "${ORPO_DASH_TEST_MLFLOW:-}" ]; then
  if [ ! -x .venv-mlflow/bin/mlflow ]; then
    python3 -m venv .venv-mlflow && .venv-mlflow/bin/python -m pip install -q "mlflow>=3,<4" \
      || echo "WARNING: could not install mlflow into .venv-mlflow; the live MLflow server test will skip" >&2
  fi
  [ -x .venv-mlflow/bin/mlflow ] && export ORPO_DASH_TEST_MLFLOW="$PWD/.venv-mlflow/bin/mlflow"
fi
# Lint first: a style or import error fails in seconds, not after the suite. mypy runs inside the suite
# (tests/test_types.py), so both gate CI.
python -m ruff check .
exec python -m pytest "$@"
