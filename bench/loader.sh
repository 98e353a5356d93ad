#!/usr/bin/env bash
# bench/loader: one rank's load throughput from a page-cache-resident
# checkpoint of ~2.4 GiB in 4 shards, beside read() of the same files into a
# pre-touched buffer and Python safetensors (safe_open + get_slice), same run.
# Writes bench/results/loader-<date>-<host>.md.
#   bench/loader.sh [build-dir] [checkpoint-dir]
set -euo pipefail
cd "$(dirname "$0")/.."
B="${1:-build}"; D="${2:-/tmp/tppp_bench_ckpt}"
lb="$B/bench/loader_bench"
[ -x "$lb" ] || { echo "missing $lb: build first"; exit 1; }
python3 -c "import safetensors, numpy" 2>/dev/null || python3 -m pip install -q safetensors numpy
[ -f "$D/model.safetensors.index.json" ] || python3 bench/make_big_checkpoint.py "$D"
cat "$D"/*.safetensors > /dev/null   # page-cache resident
reps=${REPS:-3}
median() { sort -g | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
declare -A t
for tp in 1 2; do
  for r in $(seq "$reps"); do
    while read -r k s b; do t[$tp.$k]+="$s "; t[$tp.$k.bytes]=$b; done < <("$lb" "$D" "$tp" 0)
    read -r k s b < <(python3 bench/loader_py.py "$D" "$tp" 0); t[$tp.py]+="$s "; t[$tp.py.bytes]=$b
  done
done
gbs() { awk -v b="$1" -v s="$2" 'BEGIN{printf "%.2f", b / s / 1e9}'; }
host=$(hostname); date=$(date -u +%Y-%m-%d)
out="bench/results/loader-$date-$host.md"
{
  echo "# bench/loader — $date, host $host ($(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB)"
  echo
  echo "Checkpoint: $(du -sh "$D" | cut -f1) in $(ls "$D"/*.safetensors | wc -l) shards, f16, page-cache resident."
  echo "Median of $reps runs. GB/s = 1e9 bytes of this rank's slices per second."
  echo
  echo "| TP | rank 0 reads | method | seconds | GB/s | vs read() |"
  echo "|---:|---:|---|---:|---:|---:|"
  rd=$(tr ' ' '\n' <<<"${t[1.read]}" | grep . | median)
  for tp in 1 2; do
    bytes=${t[$tp.ours.bytes]}
    for k in ours ours1 arena read py; do
      [ -n "${t[$tp.$k]:-}" ] || continue
      s=$(tr ' ' '\n' <<<"${t[$tp.$k]}" | grep . | median)
      name=$k
      case $k in
        ours) name="libtppp load_rank, pre-touched host buffers, default threads";;
        ours1) name="libtppp load_rank, pre-touched host buffers, 1 thread";;
        arena) name="libtppp load_rank, library arena (fresh memory, allocation timed)";;
        read) name="read() of the whole files, pre-touched buffer, 1 thread";;
        py) name="Python safetensors safe_open + get_slice (numpy)";;
      esac
      ratio=$(awk -v r="$rd" -v s="$s" -v tp="$tp" 'BEGIN{ if (tp==1) printf "%.2fx", r/s; else print "-"}')
      echo "| $tp | $bytes B | $name | $s | $(gbs "$bytes" "$s") | $ratio |"
    done
  done
} | tee "$out"
echo "written to $out" >&2
