#!/usr/bin/env bash
# bench/linear on a GPU: ours (bench/linear_gpu, TP=1 through the C API on
# the CUDA backend) beside torch F.linear on the same GPU in the same run.
# Targets (issue): >= 1.0x torch throughput over the grid, time-weighted
# (sum of torch times / sum of ours); >= 80% of the measured device copy
# bandwidth for M <= 16 with weights >= 64 MB (weight bytes / time).
#   bench/linear_gpu.sh BIN_DIR [--quick]  -> bench/results/linear-gpu-<date>-<gpu>.md
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${1:?usage: bench/linear_gpu.sh BIN_DIR [--quick]}"; shift || true
ours_out=$(mktemp); torch_out=$(mktemp)
"$BIN/linear_gpu" "$@" > "$ours_out"
python3 bench/linear_torch_gpu.py "$@" > "$torch_out"
gpu=$(sed -n 's/^gpu //p' "$ours_out"); date=$(date -u +%Y-%m-%d)
slug=$(echo "$gpu" | tr ' ' '-' | tr -cd 'A-Za-z0-9-')
out="bench/results/linear-gpu-$date-$slug.md"
python3 - "$ours_out" "$torch_out" "$gpu" "$date" > "$out" <<'PY'
import sys
ours, torch_, gpu, date = sys.argv[1:5]
def read(path, tag):
    rows, copy, version = {}, None, "?"
    for line in open(path):
        f = line.split()
        if f and f[0] == "copy": copy = float(f[1])
        if f and f[0] == "version": version = f[1]
        if f and f[0] == tag: rows[tuple(int(v) for v in f[2:5])] = float(f[5])
    return rows, copy, version
o, ocopy, _ = read(ours, "ours")
t, tcopy, tv = read(torch_, "torch")
print(f"# bench/linear on a GPU — {date}, {gpu}, torch {tv}\n")
print(f"Device copy ceiling (1 GiB device-to-device, read + written): {ocopy:.0f} GB/s (ours, cudaMemcpyAsync), "
      f"{tcopy:.0f} GB/s (torch copy_).\n")
print("bf16, TP=1, y = x W^T; CUDA events around each forward, cold L2 (weights rotate through >= 400 MB of copies), median.\n")
print("| M | K | N | ours us | torch us | torch/ours | ours weight GB/s | % of copy |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|")
so = st = 0.0
bw_rows = []
for key in sorted(o, key=lambda k: (k[1], k[2], k[0])):
    m, k, n = key
    if key not in t: continue
    so += o[key]; st += t[key]
    wgb = n * k * 2 / (o[key] * 1e-6) / 1e9
    pct = 100 * wgb / ocopy
    if m <= 16 and n * k * 2 >= 64e6: bw_rows.append(pct)
    print(f"| {m} | {k} | {n} | {o[key]:.1f} | {t[key]:.1f} | {t[key]/o[key]:.2f}x | {wgb:.0f} | {pct:.0f}% |")
print()
print(f"Time-weighted over the grid: torch {st:.0f} us / ours {so:.0f} us = **{st/so:.3f}x** (target >= 1.0x).")
if bw_rows:
    print(f"M <= 16, weights >= 64 MB: {min(bw_rows):.0f}%..{max(bw_rows):.0f}% of the copy bandwidth (target >= 80%).")
PY
cat "$out"
echo "wrote $out"
