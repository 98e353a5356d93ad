#!/usr/bin/env bash
# bench/comm: libtppp p2p and all_reduce between 2 local processes, beside
# ucx_perftest (tag_bw, tag_lat; same sizes, same UCX_TLS) and Open MPI's
# MPI_Allreduce, all in this one run. Prints a markdown table and writes it to
# bench/results/comm-<date>-<host>.md.
#   bench/comm.sh [build-dir]        (UCX_TLS from the environment, if set)
set -euo pipefail
cd "$(dirname "$0")/.."
B="${1:-build}"
run="$B/tppp-run"; cb="$B/bench/comm_bench"; mpi="$B/bench/mpi_allreduce"
for f in "$run" "$cb"; do [ -x "$f" ] || { echo "missing $f: build first (scripts/test.sh)"; exit 1; }; done
command -v ucx_perftest >/dev/null || { echo "ucx_perftest missing: apt-get install ucx-utils"; exit 1; }
tls="${UCX_TLS:-default}"
sizes="8 4096 65536 1048576 4194304 16777216"
port=$(( 20000 + RANDOM % 20000 ))

perftest() {  # test size iters -> the "Final:" line
  port=$((port + 1))
  ucx_perftest -t "$1" -s "$2" -n "$3" -p "$port" >/dev/null 2>&1 &
  local srv=$!
  sleep 0.3
  ucx_perftest 127.0.0.1 -t "$1" -s "$2" -n "$3" -p "$port" 2>&1 | grep '^Final:' || true
  wait "$srv" || true
}

# Each figure is the median of $reps runs, ours and the peer's alike, run
# alternately so drift on a shared machine hits both.
reps=${REPS:-3}
median() { sort -g | awk '{a[NR]=$1} END{ if (NR==0) print "nan"; else print a[int((NR+1)/2)] }'; }
declare -A bw_runs ref_runs ar_runs mpi_runs
lat_runs=""; ref_lat_runs=""
for rep in $(seq "$reps"); do
  echo "round $rep/$reps: p2p bandwidth..." >&2
  while read -r k s v; do bw_runs[$s]+="$v "; done < <("$run" -n 2 -- "$cb" bw $sizes | sed 's/^\[[0-9]*\] //' | grep '^bw')
  for s in $sizes; do
    it=2000; [ "$s" -ge 4194304 ] && it=500
    ref_runs[$s]+="$(perftest tag_bw "$s" "$it" | awk '{print $7}') "
  done
  echo "round $rep/$reps: latency..." >&2
  lat_runs+="$("$run" -n 2 -- "$cb" lat 8 | sed 's/^\[[0-9]*\] //' | awk '/^lat/{print $3}') "
  ref_lat_runs+="$(perftest tag_lat 8 200000 | awk '{print $4}') "
  echo "round $rep/$reps: all_reduce..." >&2
  while read -r k s v; do ar_runs[$s]+="$v "; done < <("$run" -n 2 -- "$cb" ar | sed 's/^\[[0-9]*\] //' | grep '^ar')
  if [ -x "$mpi" ]; then
    while read -r k s v; do mpi_runs[$s]+="$v "; done < <(mpirun --allow-run-as-root --oversubscribe -np 2 "$mpi" | grep '^ar')
  fi
done
declare -A our_bw ref_bw our_ar mpi_ar
for s in "${!bw_runs[@]}"; do our_bw[$s]=$(tr ' ' '\n' <<<"${bw_runs[$s]}" | grep . | median); done
for s in "${!ref_runs[@]}"; do ref_bw[$s]=$(tr ' ' '\n' <<<"${ref_runs[$s]}" | grep . | median); done
for s in "${!ar_runs[@]}"; do our_ar[$s]=$(tr ' ' '\n' <<<"${ar_runs[$s]}" | grep . | median); done
for s in "${!mpi_runs[@]}"; do mpi_ar[$s]=$(tr ' ' '\n' <<<"${mpi_runs[$s]}" | grep . | median); done
our_lat=$(tr ' ' '\n' <<<"$lat_runs" | grep . | median)
ref_lat=$(tr ' ' '\n' <<<"$ref_lat_runs" | grep . | median)

host=$(hostname); date=$(date -u +%Y-%m-%d)
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
out="bench/results/comm-$date-$host.md"
{
  echo "# bench/comm — $date, host $host ($(nproc) cores: $cpu)"
  echo
  echo "UCX $(ucx_info -v | awk '/Version/{print $3; exit}'), UCX_TLS=$tls, $(mpirun --version 2>/dev/null | head -1)."
  echo "2 processes on one machine; each figure is the median of $reps alternating runs. MB/s = 2^20 bytes/s. Ratios > 1 favour libtppp."
  echo
  echo "## P2P bandwidth (window of 32 isends) vs ucx_perftest tag_bw"
  echo
  echo "| size (B) | libtppp MB/s | ucx_perftest MB/s | ratio |"
  echo "|---:|---:|---:|---:|"
  for s in $sizes; do
    o=${our_bw[$s]:-nan}; r=${ref_bw[$s]:-nan}
    echo "| $s | $o | $r | $(awk -v a="$o" -v b="$r" 'BEGIN{ if (b>0) printf "%.2f", a/b; else print "n/a"}') |"
  done
  echo
  echo "## 8-byte latency (half round trip) vs ucx_perftest tag_lat"
  echo
  echo "| libtppp us | ucx_perftest us | difference us |"
  echo "|---:|---:|---:|"
  echo "| $our_lat | $ref_lat | $(awk -v a="$our_lat" -v b="$ref_lat" 'BEGIN{printf "%+.3f", a-b}') |"
  echo
  echo "## all_reduce f32 sum, 2 ranks, time per call (slower rank's mean) vs Open MPI MPI_Allreduce"
  echo
  echo "| bytes | libtppp us | Open MPI us | speedup |"
  echo "|---:|---:|---:|---:|"
  for s in $(printf '%s\n' "${!our_ar[@]}" | sort -n); do
    o=${our_ar[$s]}; m=${mpi_ar[$s]:-nan}
    echo "| $s | $o | $m | $(awk -v a="$o" -v b="$m" 'BEGIN{ if (a>0 && b>0) printf "%.2fx", b/a; else print "n/a"}') |"
  done
} | tee "$out"
echo "written to $out" >&2
