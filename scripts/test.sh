#!/usr/bin/env bash
# Install (once, from the lock) and run the test suite. Extra pytest arguments pass through, e.g. `-m slow`.
#   bash scripts/test.sh --latest ...   the same suite on the newest releases inside the ranges (.venv-latest)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--latest" ]; then
  shift
  export VENV=${VENV:-.venv-latest}
  bash scripts/setup.sh --latest
else
  export VENV=${VENV:-.venv}
  bash scripts/setup.sh
fi
. "$VENV/bin/activate"
export HF_HUB_OFFLINE=1
python -m pytest -q "$@"
