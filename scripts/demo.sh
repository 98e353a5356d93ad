#!/usr/bin/env bash
# README's first command: build, then run the pipeline example as 4 local
# processes: a TP=2 x PP=2 stack of MLP blocks over UCX on the CPU, weights
# from a safetensors checkpoint, checked against a one-process run.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" --target tppp-run pipeline_mlp
cd build
exec ./tppp-run -n 4 -- ./pipeline_mlp ../tests/fixtures/data/qwen2
