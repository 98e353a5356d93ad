#!/usr/bin/env bash
# bench/model: the CPU backend on real models beside transformers and the
# memory roofline (bench/model.py says what is measured and how).
#   bench/model.sh [--build DIR] [--rounds R] [--models smollm2-f32,smollm2-bf16,bench] [--batches 1,4,16] [--grids]
#   needs torch + transformers ($HF_PY, else python3) and a build (model_bench)
#   -> bench/results/model-<date>-<host>.md
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${HF_PY:-python3}" bench/model.py "$@"
