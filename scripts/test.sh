#!/usr/bin/env bash
# Install (once) and run the test suite. Extra pytest arguments pass through, e.g. `-m slow`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
export HF_HUB_OFFLINE=1
python -m pytest -q "$@"
