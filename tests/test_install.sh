#!/usr/bin/env bash
# Installs the build into a temporary prefix, then builds the C examples
# against the installed package twice: with pkg-config and with
# find_package(tppp); runs the demo over 2 ranks. Args: build dir, source
# dir, and --after-demo: build a fresh tree exactly as README's demo command
# does (scripts/demo.sh --build-only) and install from that instead.
set -euo pipefail
build="$1"; src="$2"
prefix=$(mktemp -d); work=$(mktemp -d)
trap 'rm -rf "$prefix" "$work"' EXIT
if [ "${3:-}" = --after-demo ]; then
  build="$work/demo-build"
  BUILD_DIR="$build" "$src/scripts/demo.sh" --build-only >/dev/null
fi
cmake --install "$build" --prefix "$prefix" >/dev/null
for f in include/tppp/c_api.h lib/pkgconfig/tppp.pc lib/cmake/tppp/tpppConfig.cmake bin/tppp-run bin/tppp-inspect; do
  [ -e "$prefix/$f" ] || { echo "missing after install: $f"; exit 1; }
done
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig" LD_LIBRARY_PATH="$prefix/lib"
# As README says: pkg-config's flags alone (they carry the rpath), so the program finds libtppp.so by itself.
cc -o "$work/demo_pc" "$src/examples/demo.c" $(pkg-config --cflags --libs tppp) -lm
finds_installed() {  # a program (or library) resolves libtppp.so to the installed one with no LD_LIBRARY_PATH
  local found
  found=$(env -u LD_LIBRARY_PATH ldd "$1" | awk '/libtppp/{print $3}')
  [ -n "$found" ] && [ "$(readlink -f "$found")" = "$(readlink -f "$prefix/lib/libtppp.so")" ] ||
    { echo "$1 does not find the installed libtppp.so by its rpath (ldd: ${found:-not found})"; exit 1; }
}
finds_installed "$work/demo_pc"
finds_installed "$prefix/bin/tppp-inspect"
env -u LD_LIBRARY_PATH "$prefix/bin/tppp-inspect" "$src/tests/fixtures/data/qwen2" >/dev/null
# Go and Rust programs built against the installed prefix start without LD_LIBRARY_PATH too.
if command -v go >/dev/null && [ "${3:-}" != --after-demo ]; then
  (cd "$src/bindings/go" && CGO_LDFLAGS="$(pkg-config --libs tppp)" GOFLAGS=-mod=mod GOPROXY=off \
    GOCACHE="$work/go-cache" go test -c -o "$work/go_tppp.test" ./tppp >/dev/null)
  finds_installed "$work/go_tppp.test"
fi
cargo=$(command -v cargo || echo "$HOME/.cargo/bin/cargo")
if [ -x "$cargo" ] && [ "${3:-}" != --after-demo ]; then
  (cd "$src/bindings/rust" && env -u TPPP_LIB_DIR CARGO_TARGET_DIR="$work/cargo" "$cargo" build --offline --quiet \
    --example model)
  finds_installed "$work/cargo/debug/examples/model"
fi
mkdir -p "$work/cm"
cat > "$work/cm/CMakeLists.txt" <<CM
cmake_minimum_required(VERSION 3.22)
project(uses_tppp C)
find_package(tppp REQUIRED)
add_executable(pipeline_mlp $src/examples/pipeline_mlp.c)
target_link_libraries(pipeline_mlp PRIVATE tppp::tppp m)
CM
cmake -S "$work/cm" -B "$work/cm/b" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$work/cm/b" >/dev/null
"$prefix/bin/tppp-run" -n 2 --timeout 60 -- "$work/demo_pc" | grep -q "OK"
(cd "$work" && "$prefix/bin/tppp-run" -n 4 --timeout 60 -- "$work/cm/b/pipeline_mlp" "$src/tests/fixtures/data/qwen2" | grep -q " OK")
echo "install OK: pkg-config and find_package(tppp) builds run"
