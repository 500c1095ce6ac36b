#!/usr/bin/env bash
# Static checks CI runs after the tests: ruff, then mypy strict (scripts/typecheck.sh), at the locked versions.
#   bash scripts/check.sh [--latest]
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--latest" ]; then
  export VENV=${VENV:-.venv-latest}
  bash scripts/setup.sh --latest
else
  export VENV=${VENV:-.venv}
  bash scripts/setup.sh
fi
. "$VENV/bin/activate"
python -m ruff check src tests benchmarks scripts
bash scripts/typecheck.sh
