# Sourced by bench/comm.sh and bench/comm_hosts.sh: figures gathered per
# round in R["key size"] (one value per round, space-separated), and the
# table cells made from them: median (min-max), ratios of medians.
declare -A R
add() { R["$1 $2"]+="$3 "; }
stat() {  # key size -> "median min max"
  tr ' ' '\n' <<<"${R["$1 $2"]:-}" | grep . | sort -g |
    awk '{a[NR]=$1} END{ if (NR==0) print "nan nan nan"; else print a[int((NR+1)/2)], a[1], a[NR] }'
}
cell() { read -r m lo hi <<<"$(stat "$1" "$2")"; printf '%s (%s-%s)' "$m" "$lo" "$hi"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (a>0 && b>0) printf "%.2f", a/b; else print "n/a"}'; }
med() { stat "$1" "$2" | awk '{print $1}'; }
host=$(hostname); date=$(date -u +%Y-%m-%d)
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
# ar_table N TITLE: the all_reduce table of keys arN (ours) and mpiN (Open MPI).
ar_table() {
  echo
  echo "## $2"
  echo
  echo "| bytes | libtppp us | Open MPI us | speedup |"
  echo "|---:|---:|---:|---:|"
  for s in $(for k in "${!R[@]}"; do [[ $k == "ar$1 "* ]] && echo "${k#* }"; done | sort -n); do
    echo "| $s | $(cell "ar$1" "$s") | $(cell "mpi$1" "$s") | $(ratio "$(med "mpi$1" "$s")" "$(med "ar$1" "$s")")x |"
  done
}
