#!/usr/bin/env bash
# bench/comm: libtppp p2p and all_reduce between local processes, beside
# ucx_perftest (tag_bw, tag_lat; same sizes, same message counts, same
# UCX_TLS) and Open MPI's MPI_Allreduce (2 and 4 ranks), all in this one run.
# A third p2p column is UCX alone in comm_bench's own loop (comm_raw_ucx):
# libtppp against it is what libtppp's p2p path costs; it against
# ucx_perftest is what the loop's shape costs.
# Every figure is taken REPS times (default 3), ours and the peer's
# alternately so a shared machine's drift hits both; the table shows the
# median and the spread (min-max). Writes bench/results/comm-<date>-<host>.md.
#   bench/comm.sh [build-dir]        (UCX_TLS from the environment, if set)
#   bench/comm.sh --hosts H [build-dir]: across H simulated hosts instead
#   (bench/comm_hosts.sh: p2p latency vs ucx_perftest, all_reduce vs Open MPI)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--hosts" ]; then exec bench/comm_hosts.sh "$2" "${3:-build}"; fi
B="${1:-build}"
run="$B/tppp-run"; cb="$B/bench/comm_bench"; mpi="$B/bench/mpi_allreduce"; raw="$B/bench/comm_raw_ucx"
for f in "$run" "$cb" "$mpi" "$raw"; do [ -x "$f" ] || { echo "missing $f: build first (scripts/test.sh)"; exit 1; }; done
command -v ucx_perftest >/dev/null || { echo "ucx_perftest missing: apt-get install ucx-utils"; exit 1; }
command -v mpirun >/dev/null || { echo "mpirun missing: apt-get install openmpi-bin"; exit 1; }
tls="${UCX_TLS:-default}"
sizes="8 16 32 64 128 256 512 1024 2048 4096 65536 1048576 4194304 16777216"
port=$(( 20000 + RANDOM % 20000 ))
iters() { local s=$1; if [ "$s" -le 4096 ]; then echo 200000; elif [ "$s" -le 65536 ]; then echo 20000;
          elif [ "$s" -le 1048576 ]; then echo 2000; else echo 500; fi; }  # as bench_util.hpp's bw_messages

perftest() {  # test size iters -> the "Final:" line
  port=$((port + 1))
  ucx_perftest -t "$1" -s "$2" -n "$3" -p "$port" >/dev/null 2>&1 &
  local srv=$!
  sleep 0.3
  ucx_perftest 127.0.0.1 -t "$1" -s "$2" -n "$3" -p "$port" 2>&1 | grep '^Final:' || true
  wait "$srv" || true
}

reps=${REPS:-3}
. bench/table_util.sh
for rep in $(seq "$reps"); do
  echo "round $rep/$reps: p2p bandwidth..." >&2
  while read -r _ s v; do add bw "$s" "$v"; done < <("$run" -n 2 -- "$cb" bw $sizes | sed 's/^\[[0-9]*\] //' | grep '^bw')
  for s in $sizes; do add ref_bw "$s" "$(perftest tag_bw "$s" "$(iters "$s")" | awk '{print $7}')"; done
  while read -r _ s v; do add raw_bw "$s" "$v"; done < <("$run" -n 2 -- "$raw" $sizes | sed 's/^\[[0-9]*\] //' | grep '^raw')
  echo "round $rep/$reps: latency..." >&2
  add lat 8 "$("$run" -n 2 -- "$cb" lat 8 | sed 's/^\[[0-9]*\] //' | awk '/^lat/{print $3}')"
  add ref_lat 8 "$(perftest tag_lat 8 200000 | awk '{print $4}')"
  for n in 2 4; do
    echo "round $rep/$reps: all_reduce, $n ranks..." >&2
    while read -r _ s v; do add "ar$n" "$s" "$v"; done < <("$run" -n "$n" -- "$cb" ar | sed 's/^\[[0-9]*\] //' | grep '^ar')
    while read -r _ s v; do add "mpi$n" "$s" "$v"; done < <(mpirun --allow-run-as-root --oversubscribe -np "$n" "$mpi" | grep '^ar')
  done
done

out="bench/results/comm-$date-$host.md"
{
  echo "# bench/comm — $date, host $host ($(nproc) cores: $cpu)"
  echo
  echo "UCX $(ucx_info -v | awk '/Version/{print $3; exit}'), UCX_TLS=$tls, $(mpirun --version 2>/dev/null | head -1)."
  echo "Local processes; each cell is the median of $reps alternating runs, (min-max) beside it. MB/s = 2^20 bytes/s."
  echo "Ratios are of medians; > 1 favours libtppp."
  echo
  echo "## P2P bandwidth and message rate (32 sends in flight, one receive posted at a time) vs ucx_perftest tag_bw, 2 ranks"
  echo
  echo "| size (B) | messages | libtppp MB/s | ucx_perftest MB/s | libtppp Mmsg/s | ucx_perftest Mmsg/s | ratio | UCX alone, same loop MB/s | libtppp / UCX alone |"
  echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  for s in $sizes; do
    o=$(med bw "$s"); r=$(med ref_bw "$s")
    mo=$(awk -v b="$o" -v s="$s" 'BEGIN{printf "%.3f", b*1048576/s/1e6}')
    mr=$(awk -v b="$r" -v s="$s" 'BEGIN{printf "%.3f", b*1048576/s/1e6}')
    echo "| $s | $(iters "$s") | $(cell bw "$s") | $(cell ref_bw "$s") | $mo | $mr | $(ratio "$o" "$r") | $(cell raw_bw "$s") | $(ratio "$o" "$(med raw_bw "$s")") |"
  done
  echo
  echo "## 8-byte latency (half round trip) vs ucx_perftest tag_lat"
  echo
  echo "| libtppp us | ucx_perftest us | difference us |"
  echo "|---:|---:|---:|"
  o=$(med lat 8); r=$(med ref_lat 8)
  echo "| $(cell lat 8) | $(cell ref_lat 8) | $(awk -v a="$o" -v b="$r" 'BEGIN{printf "%+.3f", a-b}') |"
  for n in 2 4; do
    ar_table "$n" "all_reduce f32 sum, $n ranks: time per call (slowest rank's mean) vs Open MPI MPI_Allreduce"
  done
} | tee "$out"
echo "written to $out" >&2
