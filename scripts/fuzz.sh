#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan + UBSan) and runs each for
# FUZZ_SECONDS (default 60), seeded with every fixture file. Exit non-zero on
# any crash; crashing inputs are left in build-fuzz/.
set -euo pipefail
cd "$(dirname "$0")/.."
TPPP_WITH_CLANG=1 scripts/install-deps.sh
secs="${FUZZ_SECONDS:-60}"
out=build-fuzz
mkdir -p "$out"
flags=(-std=c++17 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -Iinclude -Isrc)
common=(src/core/error.cpp src/core/dtype.cpp src/loader/safetensors.cpp src/loader/shard_plan.cpp)
clang++ "${flags[@]}" tests/fuzz/fuzz_safetensors.cpp "${common[@]}" -o "$out/fuzz_safetensors"
clang++ "${flags[@]}" tests/fuzz/fuzz_index.cpp "${common[@]}" -o "$out/fuzz_index"
fix=tests/fixtures/data
mkdir -p "$out/seeds_st" "$out/seeds_idx" "$out/corpus_st" "$out/corpus_idx"
find "$fix" -name '*.safetensors' -exec cp {} "$out/seeds_st/" \; 2>/dev/null || true
i=0; for f in $(find "$fix" -name '*.json'); do cp "$f" "$out/seeds_idx/$i.json"; i=$((i+1)); done
for t in st idx; do
  bin=fuzz_safetensors; [ $t = idx ] && bin=fuzz_index
  echo "== $bin for ${secs}s =="
  (cd "$out" && ./$bin -max_total_time="$secs" -max_len=65536 -print_final_stats=1 corpus_$t seeds_$t 2>&1 | tail -15)
done
echo "fuzzing: no crashes"
