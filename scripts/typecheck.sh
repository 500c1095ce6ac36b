#!/usr/bin/env bash
# mypy (strict, configured in pyproject.toml) with TensorRT's Python API typed by tensorrt-stubs, so misuse of
# the TensorRT API in engines/ and runtime/backends/tensorrt.py is caught without TensorRT or a GPU.
#
# tensorrt-stubs cannot be used as installed: it declares a dependency on `tensorrt` (whose PyPI wheel fetches
# from NVIDIA's index), so it is installed with --no-deps; its tensorrt/*.pyi ship without py.typed (mypy skips
# them in site-packages) and with two syntax errors (a parameter named `in`, a required parameter after
# defaults). scripts/trt_stubs.py copies them, patched, to build/trt-stubs, which goes on MYPYPATH.
# Usage: bash scripts/typecheck.sh [mypy args]
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${VENV:-.venv}
[ -n "${VIRTUAL_ENV:-}" ] || { [ -f "$venv/bin/activate" ] && . "$venv/bin/activate"; }
python -m pip show -q tensorrt-stubs >/dev/null 2>&1 || { echo "tensorrt-stubs missing: run bash scripts/setup.sh" >&2; exit 2; }
python scripts/trt_stubs.py build/trt-stubs
MYPYPATH=build/trt-stubs python -m mypy "$@"
