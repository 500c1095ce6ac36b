#!/usr/bin/env bash
# Create a virtual environment and install encoderforge with everything the demo, the tests and the checks need.
#
#   bash scripts/setup.sh            .venv from the lock (constraints.txt): the versions CI runs
#   bash scripts/setup.sh --latest   .venv-latest with the newest releases inside pyproject.toml's ranges, to find
#                                    upstream drift on purpose (then `bash scripts/lock.sh` to move the lock)
#
# torch is pinned to the CPU build first: an unpinned torch would pull a multi-GB CUDA build.
# The lock is a pip constraints file (see constraints.txt's header for why not uv.lock); a stamp skips the
# install when neither the lock nor pyproject.toml changed since the last complete one.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=locked
[ "${1:-}" = "--latest" ] && mode=latest
venv=${VENV:-$([ $mode = latest ] && echo .venv-latest || echo .venv)}
PYTHON=${PYTHON:-python3}
stamp="$venv/.encoderforge-installed"
want="$mode $(cat pyproject.toml constraints.txt scripts/setup.sh | sha256sum | cut -c1-16)"
if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
[ -x "$venv/bin/python" ] || "$PYTHON" -m venv "$venv"
rm -f "$stamp"
. "$venv/bin/activate"
if [ $mode = locked ]; then
  pin=(-c constraints.txt)
  python -m pip install -q "pip==$(sed -n 's/^pip==//p' constraints.txt)"
else
  pin=(--upgrade --upgrade-strategy eager)
  python -m pip install -q --upgrade pip
fi
python -m pip install -q "torch==2.13.0"
python -m pip install -q "${pin[@]}" -e ".[dev,ray,serve]" "cuda-python>=12"
# tensorrt-stubs, the typed TensorRT API for mypy, declares a dependency on `tensorrt`, which cannot be installed
# without NVIDIA's index (see scripts/typecheck.sh): so without its dependencies.
python -m pip install -q "${pin[@]}" --no-deps "tensorrt-stubs>=10.8"
echo "$want" > "$stamp"
