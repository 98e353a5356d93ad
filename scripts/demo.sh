#!/usr/bin/env bash
# README's first command: build, then run the pipeline example as 4 local
# processes: a TP=2 x PP=2 stack of MLP blocks over UCX on the CPU, weights
# from a safetensors checkpoint, checked against a one-process run.
# The build includes everything `cmake --install` copies, so installing
# right after the demo works.
#   scripts/demo.sh                 build into build/ (or $BUILD_DIR) and run
#   scripts/demo.sh --build-only    build only (tests/test_install.sh uses it)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
build="${BUILD_DIR:-build}"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
# The install set (library, tppp-run, tppp-inspect) and the example.
cmake --build "$build" -j"$(nproc)" --target tppp tppp-run tppp-inspect pipeline_mlp
[ "${1:-}" = --build-only ] && exit 0
cd "$build"
exec ./tppp-run -n 4 -- ./pipeline_mlp "$OLDPWD/tests/fixtures/data/qwen2"
