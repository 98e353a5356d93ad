#!/usr/bin/env bash
# Simulated hosts on one machine: each "host" is a network namespace with its
# own IPC, mount (a private /dev/shm), UTS (host name) and pid namespace, so
# that TCP over a veth is the only path between hosts, as between machines.
# The hosts hang off one bridge (in a namespace of its own: nothing touches
# the machine's own network) at 10.<net>.0.1, .2, ... /24.
#
#   scripts/multihost.sh [-n HOSTS] [--decoy] [--delay-us US] [--launcher] -- command [args...]
#
# Runs the command once on every host, in parallel, with
#   TPPP_HOST_INDEX  0..HOSTS-1        TPPP_HOSTS       HOSTS
#   TPPP_HOST_ADDR   this host's addr  MASTER_ADDR      host 0's address
#   MASTER_PORT      one free port, the same on every host
#   TPPP_GROUP_SECRET  one random secret per run, the same on every host
#   TPPP_MULTIHOST_IF  the hosts' link (eth0)
# and each host's output lines prefixed "host<i>| ". --decoy gives every
# host a second interface, "docker0", with the same local-only address
# (172.17.0.1/16) on all of them and a lower interface index than eth0,
# like Docker's bridge: the wrong interface is the first one found.
# --delay-us adds that one-way delay on every host's link (netem).
# --launcher runs the command once, on host 0's network, for a launcher
# that starts the ranks itself: mpirun --host host0,host1 --mca
# plm_rsh_agent "$TPPP_MULTIHOST_AGENT" (the agent runs a command on hostN).
# Exit: the first non-zero exit of a host, else 0; 77 (ctest's skip) when
# namespaces cannot be made here (not root, no CAP_SYS_ADMIN, no `ip`).
# Everything it made (namespaces, links, processes) is removed on exit.
set -uo pipefail
hosts=2 decoy=0 delay=0 launcher=0
if [ "${1:-}" = "--agent" ]; then  # mpirun's rsh agent: --agent HOST command words...
  h=${2#host}; shift 2
  exec nsenter -t "$(cat "$TPPP_MULTIHOST_DIR/host$h.pid")" -a --wd="$PWD" -- sh -c "$*"
fi
while [ $# -gt 0 ]; do
  case "$1" in
    -n) hosts=$2; shift 2 ;;
    --decoy) decoy=1; shift ;;
    --delay-us) delay=$2; shift 2 ;;
    --launcher) launcher=1; shift ;;
    --) shift; break ;;
    -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
    *) echo "multihost: unknown option $1" >&2; exit 2 ;;
  esac
done
[ $# -gt 0 ] || { echo "usage: scripts/multihost.sh [-n HOSTS] [--decoy] [--delay-us US] -- command [args...]" >&2; exit 2; }
[[ "$hosts" =~ ^[0-9]+$ ]] && [ "$hosts" -ge 1 ] && [ "$hosts" -le 32 ] || { echo "multihost: -n $hosts: 1 to 32 hosts" >&2; exit 2; }

skip() { echo "multihost: SKIP: $*" >&2; exit 77; }
command -v ip >/dev/null || skip "the 'ip' command (iproute2) is missing"
command -v unshare >/dev/null || skip "the 'unshare' command (util-linux) is missing"
[ "$(id -u)" -eq 0 ] || skip "making network namespaces needs root (running as uid $(id -u))"

tag="tppp$$"
self=$(readlink -f "$0")
dir=$(mktemp -d /tmp/tppp-multihost.XXXXXX)
net=$(( 64 + $$ % 160 ))  # 10.<net>.0.0/24: differs between concurrent runs
sw="$tag-sw"
pids=() holders=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
  [ ${#pids[@]} -gt 0 ] && sleep 0.2
  for p in "${pids[@]}" "${holders[@]}"; do kill -KILL "$p" 2>/dev/null; done
  # The holders' children are their namespaces' init: gone with them.
  for f in "$dir"/host*.pid; do [ -f "$f" ] && kill -KILL "$(cat "$f")" 2>/dev/null; done
  for ((h = 0; h < hosts; h++)); do ip netns del "$tag-h$h" 2>/dev/null; done
  ip netns del "$sw" 2>/dev/null
  rm -rf "$dir"
  return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM

err=$(ip netns add "$sw" 2>&1) || skip "cannot make a network namespace: $err"
ip -n "$sw" link add br0 type bridge forward_delay 0 stp_state 0 || skip "cannot make a bridge (no bridge support in this kernel?)"
ip -n "$sw" link set br0 up
ip -n "$sw" link set lo up
for ((h = 0; h < hosts; h++)); do
  ns="$tag-h$h"
  ip netns add "$ns" || exit 1
  ip -n "$ns" link set lo up
  if [ "$decoy" = 1 ]; then  # first, so that it has the lower interface index
    # A veth pair kept inside the host (no dummy module everywhere).
    ip -n "$ns" link add docker0 type veth peer name docker0-peer || skip "cannot make a veth pair"
    ip -n "$ns" link set docker0-peer up
    ip -n "$ns" addr add 172.17.0.1/16 dev docker0
    ip -n "$ns" link set docker0 up
  fi
  ip link add "$tag-h$h" netns "$ns" type veth peer name "p$h" netns "$sw" || skip "cannot make a veth pair"
  ip -n "$ns" link set "$tag-h$h" name eth0
  ip -n "$ns" addr add "10.$net.0.$((h + 1))/24" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$sw" link set "p$h" master br0
  ip -n "$sw" link set "p$h" up
  if [ "$delay" != 0 ]; then
    ip netns exec "$ns" tc qdisc add dev eth0 root netem delay "${delay}us" || skip "netem is not available"
  fi
done
# One holder per host keeps its namespaces: its own IPC, UTS (host name) and
# pid namespace (with its /proc), and a private /dev/shm.
for ((h = 0; h < hosts; h++)); do
  ip netns exec "$tag-h$h" unshare --ipc --uts --pid --fork --mount --propagation private \
    sh -c "mount -t proc proc /proc && mount -t tmpfs -o mode=1777 tmpfs /dev/shm && hostname host$h && exec sleep 100000" &
  holders+=($!)
  disown "$!"
  for _ in $(seq 200); do
    holder=$(pgrep -P "$!" 2>/dev/null | head -1)
    [ -n "$holder" ] && [ "$(readlink "/proc/$holder/exe")" = "$(readlink -f "$(command -v sleep)")" ] && break
    holder=; sleep 0.01
  done
  [ -n "$holder" ] || { echo "multihost: host$h did not start" >&2; exit 1; }
  echo "$holder" > "$dir/host$h.pid"
done
port=$(( 20000 + RANDOM % 20000 ))
secret=${TPPP_GROUP_SECRET:-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')}
export TPPP_MULTIHOST_DIR="$dir" TPPP_MULTIHOST_AGENT="$self" TPPP_HOSTS=$hosts MASTER_ADDR="10.$net.0.1" \
  MASTER_PORT=$port TPPP_GROUP_SECRET="$secret" TPPP_MULTIHOST_IF=eth0
if [ "$launcher" = 1 ]; then
  # Host 0's network and host name, the machine's pid and mount namespaces,
  # so that the agent (mpirun's rsh) can find the other hosts' holders.
  TPPP_HOST_INDEX=0 TPPP_HOST_ADDR="10.$net.0.1" \
    nsenter -t "$(cat "$dir/host0.pid")" --net --uts --ipc -- "$@" > >(sed -u "s/^/host0| /") 2>&1 &
  pids+=($!)
else
  for ((h = 0; h < hosts; h++)); do
    TPPP_HOST_INDEX=$h TPPP_HOST_ADDR="10.$net.0.$((h + 1))" \
      nsenter -t "$(cat "$dir/host$h.pid")" -a --wd="$PWD" -- "$@" > >(sed -u "s/^/host$h| /") 2>&1 &
    pids+=($!)
  done
fi
rc=0
for p in "${pids[@]}"; do
  wait "$p"; c=$?
  [ "$rc" -eq 0 ] && [ "$c" -ne 0 ] && rc=$c
done
pids=()
exit "$rc"
