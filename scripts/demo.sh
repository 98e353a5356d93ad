#!/usr/bin/env bash
# README's first command: build, then run the demo as 4 local processes
# (TP=2 x PP=2 over UCX, on the CPU).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" --target tppp-run tppp_demo
exec build/tppp-run -n 4 -- build/tppp_demo
