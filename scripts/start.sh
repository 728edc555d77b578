#!/usr/bin/env bash
# Set up (if needed), apply migrations, cache the bundled model, and start the dashboard
# on http://127.0.0.1:8000 with an embedded SQLite database in ./data. Extra arguments go to `orpo-dash serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
orpo-dash migrate
orpo-dash prepare-model
exec orpo-dash serve "$@"
