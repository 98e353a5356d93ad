#!/usr/bin/env bash
# cargo test for the Rust binding, offline, against this build's libtppp.
# Args: crate dir, lib dir.
set -euo pipefail
crate="$1"; export TPPP_LIB_DIR="$2"
export CARGO_TARGET_DIR="${TPPP_CARGO_TARGET:-$TPPP_LIB_DIR/cargo-target}"
cd "$crate"
cargo build --offline --quiet --examples
cargo test --offline --quiet
