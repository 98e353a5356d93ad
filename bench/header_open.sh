#!/usr/bin/env bash
# bench/header_open: opening a safetensors file whose header lists 100,000
# tensors (about 7.5 MB of JSON): tppp_checkpoint_open (parse, validation,
# name index) beside Python safetensors' safe_open (+ keys), same file, same
# run, alternating. Writes bench/results/header-open-<date>-<host>.md.
#   bench/header_open.sh [build-dir]
set -euo pipefail
cd "$(dirname "$0")/.."
B="${1:-build}"; lb="$B/bench/loader_bench"
[ -x "$lb" ] || { echo "missing $lb: build first"; exit 1; }
python3 -c "import safetensors, numpy" 2>/dev/null || python3 -m pip install -q safetensors numpy
f=/tmp/tppp_bench_100k.safetensors
[ -f "$f" ] || python3 - "$f" <<'PY'
import sys, numpy as np
from safetensors.numpy import save_file
save_file({f"model.layers.{i // 10}.t{i % 10}.weight": np.full((2,), i, dtype=np.float32) for i in range(100000)},
          sys.argv[1])
PY
reps=${REPS:-5}
ours=""; py=""
for r in $(seq "$reps"); do
  ours+="$("$lb" --open "$f" 1 | awk '{print $2}') "
  py+="$(python3 bench/header_open.py "$f" 1 | awk '{print $2}') "
done
median() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
o=$(median <<<"$ours"); p=$(median <<<"$py")
host=$(hostname); date=$(date -u +%Y-%m-%d)
hb=$(python3 -c "import struct,sys; print(struct.unpack('<Q', open(sys.argv[1],'rb').read(8))[0])" "$f")
out="bench/results/header-open-$date-$host.md"
{
  echo "# bench/header_open — $date, host $host ($(nproc) cores)"
  echo
  echo "One safetensors file, 100,000 tensors, header $hb bytes, page-cache resident; median of $reps alternating runs"
  echo "(each a fresh process; the time is the open call alone). safetensors $(python3 -c 'import safetensors; print(safetensors.__version__)')."
  echo
  echo "| method | seconds (median) | runs | vs Python |"
  echo "|---|---:|---|---:|"
  echo "| libtppp tppp_checkpoint_open + close | $o | $ours| $(awk -v a="$o" -v b="$p" 'BEGIN{printf "%.2fx", b/a}') |"
  echo "| Python safetensors safe_open + keys() | $p | $py| 1.00x |"
} | tee "$out"
echo "written to $out" >&2
