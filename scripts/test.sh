#!/usr/bin/env bash
# The test command README.md gives: installs what is missing, builds into
# build/ (or $BUILD_DIR), runs every test with ctest. Extra arguments go to
# cmake, e.g. scripts/test.sh -DTPPP_SANITIZE=ON.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
build="${BUILD_DIR:-build}"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
cmake --build "$build" -j"$(nproc)"
cd "$build"
ctest --output-on-failure --timeout 900
