#!/usr/bin/env bash
# README's first command: build, then run the generation example as 4 local
# processes: a tiny Qwen2 checkpoint (committed, made by transformers) split
# TP=2 x PP=2 over UCX on the CPU, greedy tokens for three prompts, checked
# against transformers' own greedy tokens (tests/fixtures/data/models).
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
cmake --build "$build" -j"$(nproc)" --target tppp tppp-run tppp-inspect generate
[ "${1:-}" = --build-only ] && exit 0
cd "$build"
exec ./tppp-run -n 4 -- ./generate "$OLDPWD/tests/fixtures/data/models/qwen2" --tp 2 --pp 2 --max-new 24 --reference
