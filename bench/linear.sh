#!/usr/bin/env bash
# bench/linear: TP layer forward on the CPU backend. TP=1 beside OpenBLAS
# cblas_sgemm called directly on the same matrices and beside torch
# F.linear (Debian's python3-torch), all in this run; TP=2 over 2 processes
# (COLUMN: no communication; ROW: all-reduce of the output) beside TP=1.
# TP=1 runs OpenBLAS on all cores; TP=2 gives each process one core.
#   bench/linear.sh [build-dir]   -> bench/results/linear-<date>-<host>.md
set -euo pipefail
cd "$(dirname "$0")/.."
B="${1:-build}"
run="$B/tppp-run"; lb="$B/bench/linear_bench"
[ -x "$lb" ] || { echo "missing $lb: build first"; exit 1; }
TORCH_PY=""
for py in ${HF_PY:-} python3 /usr/bin/python3; do
  if "$py" -c "import torch" 2>/dev/null; then TORCH_PY=$py; break; fi
done
declare -A ours direct torch col row
while read -r tag dt m k n kind a b; do ours[$dt.$m.$k.$n]=$a; direct[$dt.$m.$k.$n]=$b; done \
  < <(OPENBLAS_NUM_THREADS=$(nproc) "$run" -n 1 -- "$lb" | sed 's/^\[[0-9]*\] //' | grep '^tp1')
while read -r tag dt m k n kind a; do
  if [ "$kind" = column ]; then col[$dt.$m.$k.$n]=$a; else row[$dt.$m.$k.$n]=$a; fi
done < <(OPENBLAS_NUM_THREADS=1 "$run" -n 2 -- "$lb" | sed 's/^\[[0-9]*\] //' | grep '^tp2')
if [ -n "$TORCH_PY" ]; then
  while read -r tag dt m k n a; do torch[$dt.$m.$k.$n]=$a; done < <("$TORCH_PY" bench/linear_torch.py)
fi
host=$(hostname); date=$(date -u +%Y-%m-%d)
out="bench/results/linear-$date-$host.md"
tv=$([ -n "$TORCH_PY" ] && "$TORCH_PY" -c "import torch; print(torch.__version__)" || echo "not installed")
{
  echo "# bench/linear — $date, host $host ($(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'))"
  echo
  echo "CPU backend, y[M,N] = x[M,K] W[N,K]^T, median microseconds. OpenBLAS $(dpkg-query -W -f='${Version}' libopenblas0 2>/dev/null), torch $tv."
  echo "libtppp: its own GEMM on weights packed once in their dtype (bf16 stays bf16: half the bytes), its own pool"
  echo "(threads = cores); OpenBLAS ($("$lb" --core)):"
  echo "cblas_sgemm on the f32 values of the same matrices in both dtypes, every core; torch F.linear, every core."
  echo
  echo "| dtype | M | K | N | libtppp TP=1 | OpenBLAS direct | overhead | torch F.linear | TP=2 COLUMN | speedup | TP=2 ROW (+all-reduce) | speedup |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  for dt in f32 bf16; do for kn in "1024 4096" "4096 1024" "2048 8192" "576 3072" "1536 576"; do for m in 1 4 16 128 512; do
    set -- $kn; key="$dt.$m.$1.$2"
    o=${ours[$key]:-nan}; d=${direct[$key]:-nan}; t=${torch[$key]:-n/a}; c=${col[$key]:-nan}; r=${row[$key]:-nan}
    echo "| $dt | $m | $1 | $2 | $o | $d | $(awk -v a="$o" -v b="$d" 'BEGIN{printf "%+.1f%%", (a/b-1)*100}') | $t | $c | $(awk -v a="$o" -v b="$c" 'BEGIN{printf "%.2fx", a/b}') | $r | $(awk -v a="$o" -v b="$r" 'BEGIN{printf "%.2fx", a/b}') |"
  done; done; done
} | tee "$out"
echo "written to $out" >&2
