#!/usr/bin/env bash
# The main job on an embedded default: export the bundled all-MiniLM-L6-v2 (real weights) and a locally
# generated roberta-base-shaped QA model, validate both against PyTorch, and print the validation summary.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
export HF_HUB_OFFLINE=1
encoderforge demo --output out/demo --force
encoderforge inspect out/demo/roberta-base-qa
