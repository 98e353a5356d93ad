#!/usr/bin/env bash
# bench/comm.sh --hosts H: libtppp across H simulated hosts (scripts/multihost.sh:
# network namespaces joined by veth over a bridge, TCP the only path between
# hosts) beside its peers on the same link in the same run:
#   8-byte p2p latency (1 rank per host) vs ucx_perftest tag_lat;
#   all_reduce f32 sum, 1 and 2 ranks per host, vs Open MPI's MPI_Allreduce
#   (btl tcp between hosts, vader inside, mpi_yield_when_idle 1: without it
#   Open MPI's spinning ranks starve the kernel's network work on these
#   shared cores and every call took ~4 ms; libtppp's waits yield by
#   themselves once a yield shows the CPU is contended).
# REPS rounds (default 5: at 2 ranks per host on shared cores whole runs fall
# into a fast or a slow mode, 2x apart), ours and the peer's alternately;
# median (min-max).
# Writes bench/results/comm-hosts<H>-<date>-<host>.md.
set -euo pipefail
cd "$(dirname "$0")/.."
H=${1:-2}; B="${2:-build}"
cb="$PWD/$B/bench/comm_bench"; mpi="$PWD/$B/bench/mpi_allreduce"
mh="$PWD/scripts/multihost.sh"; ranks="$PWD/tests/multihost_ranks.sh"
for f in "$cb" "$mpi"; do [ -x "$f" ] || { echo "missing $f: build first (scripts/test.sh)"; exit 1; }; done
command -v ucx_perftest >/dev/null && command -v mpirun >/dev/null || { echo "needs ucx_perftest and mpirun"; exit 1; }
hostlist() { local per=$1 l=""; for ((h = 0; h < H; h++)); do l+="${l:+,}host$h:$per"; done; echo "$l"; }
MPI='mpirun --allow-run-as-root --mca plm_rsh_agent "$TPPP_MULTIHOST_AGENT --agent" --mca oob_tcp_if_include eth0 --mca btl_tcp_if_include eth0 --mca btl tcp,vader,self --mca mpi_yield_when_idle 1'
reps=${REPS:-5}
. bench/table_util.sh
for rep in $(seq "$reps"); do
  echo "round $rep/$reps: latency..." >&2
  add lat 8 "$("$mh" -n "$H" -- "$ranks" "$H" block "$cb" lat 8 2>&1 | awk '/\[0\] lat/{print $5}')"
  add ref_lat 8 "$("$mh" -n "$H" -- sh -c 'if [ "$TPPP_HOST_INDEX" = 0 ]; then ucx_perftest -p "$MASTER_PORT" >/dev/null 2>&1;
      elif [ "$TPPP_HOST_INDEX" = 1 ]; then sleep 0.5; ucx_perftest "$MASTER_ADDR" -p "$MASTER_PORT" -t tag_lat -s 8 -n 200000; fi' 2>&1 |
      awk '/Final:/{print $5}')"
  for per in 1 2; do
    n=$((H * per))
    echo "round $rep/$reps: all_reduce, $n ranks ($per per host)..." >&2
    while read -r s v; do add "ar$n" "$s" "$v"; done < <("$mh" -n "$H" -- "$ranks" "$n" block "$cb" ar 2>&1 | awk '/\[0\] ar /{print $4, $5}')
    while read -r s v; do add "mpi$n" "$s" "$v"; done < <("$mh" -n "$H" --launcher -- sh -c "$MPI -np $n --host $(hostlist $per) $mpi" 2>&1 | awk '/ ar /{print $3, $4}')
  done
done

out="bench/results/comm-hosts$H-$date-$host.md"
{
  echo "# bench/comm --hosts $H — $date, machine $host ($(nproc) cores: $cpu)"
  echo
  echo "$H simulated hosts on this one machine (scripts/multihost.sh: network namespaces, veth over a bridge; all"
  echo "hosts share its $(nproc) cores, so 2 ranks per host means 2x oversubscribed cores). UCX $(ucx_info -v | awk '/Version/{print $3; exit}'),"
  echo "$(mpirun --version 2>/dev/null | head -1) (btl tcp across hosts, vader inside, mpi_yield_when_idle 1)."
  echo "Each cell: the median of $reps alternating runs, (min-max). Ratios of medians; > 1 favours libtppp."
  echo
  echo "## 8-byte p2p latency (half round trip), 1 rank per host, vs ucx_perftest tag_lat (average) on the same link"
  echo
  echo "| libtppp us | ucx_perftest us | difference us |"
  echo "|---:|---:|---:|"
  echo "| $(cell lat 8) | $(cell ref_lat 8) | $(awk -v a="$(med lat 8)" -v b="$(med ref_lat 8)" 'BEGIN{printf "%+.2f", a-b}') |"
  for per in 1 2; do
    n=$((H * per))
    ar_table "$n" "all_reduce f32 sum, $n ranks ($per per host): time per call (slowest rank's mean) vs Open MPI"
  done
} | tee "$out"
echo "written to $out" >&2
