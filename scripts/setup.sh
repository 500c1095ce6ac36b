#!/usr/bin/env bash
# Create .venv (once) and install encoderforge with everything the demo and the tests need.
# torch is pinned to the CPU build first: an unpinned torch would pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q "torch==2.13.0"
python -m pip install -q -e ".[dev,ray]"
# Serving: nvidia-pytriton pins numpy<2 only for its Python-backend stub, and `encoderforge serve` gives that
# stub its own numpy<2 environment; so keep numpy 2 here and install PyTriton without that one pin.
python -m pip install -q "tritonclient[http,grpc]>=2.50,<3" "pyzmq>=23" "sh>=1.14" "typer>=0.9" \
  "typing_inspect>=0.6" "wrapt>=1.11" "grpcio>=1.64.3" "importlib_metadata>=7.0.1"
python -m pip install -q --no-deps "nvidia-pytriton>=0.7,<0.8"
# Typed TensorRT API for mypy (the real tensorrt cannot be installed without NVIDIA's index); see scripts/typecheck.sh.
python -m pip install -q --no-deps "tensorrt-stubs>=10.8"
python -m pip install -q "cuda-python>=12"
