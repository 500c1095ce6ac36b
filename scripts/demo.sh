#!/usr/bin/env bash
# The main job on an embedded default: export the bundled all-MiniLM-L6-v2 (real weights) and a locally
# generated roberta-base-shaped QA model, validate both against PyTorch, optimize the QA model for this CPU
# (--precision auto: the fastest engine x precision measured here), answer a question with it, and end with
# a latency table (PyTorch, plain ONNX Runtime, encoderforge) measured right here.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
export HF_HUB_OFFLINE=1
encoderforge demo --output out/demo --force
encoderforge inspect out/demo/roberta-base-qa-cpu > /dev/null  # the optimized artifact reads back (sha256 checked)
