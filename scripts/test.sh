#!/usr/bin/env bash
# Install (once, from the lock) and run the test suite. Extra pytest arguments pass through, e.g. `-m slow`.
#   bash scripts/test.sh --latest ...   the same suite on the newest releases inside the ranges (.venv-latest)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/_venv.sh
export HF_HUB_OFFLINE=1
python -m pytest -q "$@"
