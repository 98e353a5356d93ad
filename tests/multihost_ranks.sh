#!/usr/bin/env bash
# Starts this host's ranks of a multi-host job, as a launcher would (under
# scripts/multihost.sh): RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE from
# a placement, MASTER_ADDR/MASTER_PORT from the environment. Output lines
# are prefixed "[rank] "; the exit code is the first failing rank's.
#   multihost_ranks.sh WORLD block|cyclic command [args...]
# block: host h holds ranks h*W/H ..; cyclic: rank r lives on host r % H
# (then a TP group of consecutive ranks spans the hosts).
set -uo pipefail
world=$1 place=$2; shift 2
h=$TPPP_HOST_INDEX H=$TPPP_HOSTS
mine=()
for ((r = 0; r < world; r++)); do
  if [ "$place" = cyclic ]; then owner=$((r % H)); else owner=$((r * H / world)); fi
  [ "$owner" -eq "$h" ] && mine+=("$r")
done
pids=()
for i in "${!mine[@]}"; do
  r=${mine[$i]}
  RANK=$r WORLD_SIZE=$world LOCAL_RANK=$i LOCAL_WORLD_SIZE=${#mine[@]} TPPP_RUN_ID="multihost-$MASTER_PORT" \
    "$@" > >(sed -u "s/^/[$r] /") 2>&1 &
  pids+=($!)
done
rc=0
for p in "${pids[@]}"; do wait "$p"; c=$?; [ "$rc" -eq 0 ] && [ "$c" -ne 0 ] && rc=$c; done
exit "$rc"
