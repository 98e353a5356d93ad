#!/usr/bin/env bash
# Two simulated hosts (scripts/multihost.sh: network namespaces, each with
# its own IPC, /dev/shm, host name and pids; a decoy docker0 with the same
# address on both, first in interface order): generate at TP2 x PP2 with TP
# inside the hosts and TP across them, and follow mode, must give
# transformers' greedy tokens with no interface setting at all; then the
# collectives suite with its ranks spread over the hosts both ways, and its
# 4-rank case with shared memory off; a mismatched large all_reduce on 4 ranks.
# Skips (77) where namespaces cannot be made.
# Last, a rank killed on one host: its peer on the other gets REMOTE naming
# the rank and its host within seconds; and a rank that stays alive but
# never sends: TIMEOUT at the group's timeout, naming the rank and its host.
# Args: generate, tppp_tests, fixtures dir, dead_peer.
set -uo pipefail
gen=$1 tests=$2 fx=$3 dead=$4
here=$(cd "$(dirname "$0")" && pwd)
mh="$here/../scripts/multihost.sh"
ranks="$here/multihost_ranks.sh"
unset UCX_NET_DEVICES TPPP_BOOTSTRAP_ADDR
fail=0 n=0
run() {  # name, then the multihost command
  local name=$1; shift
  n=$((n + 1))
  out=$(timeout 600 "$mh" -n 2 --decoy -- "$@" 2>&1); rc=$?
  if [ "$rc" -eq 77 ]; then echo "$out" | tail -1; exit 77; fi
  if [ "$rc" -ne 0 ]; then echo "FAIL $name (exit $rc)"; echo "$out" | grep -v "^host.| \[.\] tokens" | tail -12; fail=$((fail + 1)); return 1; fi
  return 0
}
for place in block cyclic; do
  for extra in "" "--follow"; do
    what="generate qwen3 tp2 x pp2, $place placement ($([ $place = block ] && echo TP inside hosts || echo TP across hosts)) $extra"
    run "$what" "$ranks" 4 "$place" "$gen" "$fx/models/qwen3" --tp 2 --pp 2 --reference --max-new 12 --timeout-ms 30000 $extra || continue
    if ! grep -q "matches transformers' greedy tokens: yes" <<<"$out"; then
      echo "FAIL $what: no match"; echo "$out" | tail -8; fail=$((fail + 1)); continue
    fi
    echo "ok $what"
  done
done
for place in block cyclic; do
  run "collectives suite, $place placement" env TPPP_TEST_PLACEMENT=$place "$tests" --test-suite=collectives || continue
  if [ "$(grep -c 'Status: SUCCESS' <<<"$out")" -ne 2 ]; then
    echo "FAIL collectives suite, $place: not both hosts succeeded"; echo "$out" | tail -8; fail=$((fail + 1)); continue
  fi
  echo "ok collectives suite across 2 hosts, $place placement"
done
# The hierarchical all_reduce's two forms (local phases in shared memory,
# or UCX message rings where shared memory is off), and a large all_reduce
# made differently on one of 4 ranks (it fails everywhere, the next pair up).
# (The collectives suite above ran the first form.) "mixed": shared memory
# on host0 only (both forms must pair the same blocks across hosts).
for shm in 1 0 mixed; do
  suites=faults; [ "$shm" != 1 ] && suites=collectives,faults
  run "4-rank collectives, block placement, TPPP_COLL_SHM=$shm" env TPPP_TEST_PLACEMENT=block SHM=$shm sh -c \
    '[ "$SHM" = mixed ] && SHM=$((TPPP_HOST_INDEX == 0)); export TPPP_COLL_SHM=$SHM; exec "$@"' sh \
    "$tests" --test-suite=$suites --test-case='4 ranks*' || continue
  if [ "$(grep -c 'Status: SUCCESS' <<<"$out")" -ne 2 ]; then
    echo "FAIL 4-rank collectives, TPPP_COLL_SHM=$shm: not both hosts succeeded"; echo "$out" | tail -8; fail=$((fail + 1)); continue
  fi
  echo "ok 4 ranks over 2 hosts ($suites), TPPP_COLL_SHM=$shm"
done
n=$((n + 1))
start=$(date +%s)
out=$(timeout 120 "$mh" -n 2 --decoy -- "$ranks" 2 block "$dead" 2>&1)
took=$(( $(date +%s) - start ))
if grep -q "rank 0 got TPPP_ERR_REMOTE: .*rank 1: that peer is dead (pid [0-9]* on host1" <<<"$out" && [ "$took" -lt 20 ]; then
  echo "ok a rank killed on host1: rank 0 on host0 got REMOTE naming it and its host (${took}s)"
else
  echo "FAIL dead peer across hosts (${took}s)"; echo "$out" | tail -5; fail=$((fail + 1))
fi
n=$((n + 1))
start=$(date +%s)
out=$(timeout 120 "$mh" -n 2 --decoy -- "$ranks" 2 block "$dead" stuck 2>&1)
took=$(( $(date +%s) - start ))
if grep -q "rank 0 got TPPP_ERR_TIMEOUT: .*rank 1 (pid [0-9]* on host1) timed out after 1500 ms" <<<"$out" && [ "$took" -lt 30 ]; then
  echo "ok a rank on host1 that never sends: rank 0 on host0 got TIMEOUT naming it and its host (${took}s)"
else
  echo "FAIL stuck peer across hosts (${took}s)"; echo "$out" | tail -5; fail=$((fail + 1))
fi
echo "$((n - fail)) passed, $fail failed"
[ "$fail" -eq 0 ]
