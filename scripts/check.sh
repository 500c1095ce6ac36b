#!/usr/bin/env bash
# Static checks CI runs after the tests: ruff, then mypy strict (scripts/typecheck.sh), at the locked versions.
#   bash scripts/check.sh [--latest]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/_venv.sh
python -m ruff check src tests benchmarks scripts
bash scripts/typecheck.sh
