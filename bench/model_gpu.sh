#!/usr/bin/env bash
# bench/model_gpu: the model runtime on one GPU beside transformers, same run,
# same checkpoint (a Qwen2-7B-shaped one of random bf16 weights, written by
# bench/make_qwen7b.py when missing): weight loading (ours rank-wide into
# device memory vs safetensors load_file(device="cuda")), decode step time at
# batch 1, 8, 32 after a 128-token prompt and a 2048-token prefill, beside
# transformers eager, transformers + static cache + torch.compile
# (reduce-overhead) and the roofline (weight bytes / measured copy bandwidth).
# Targets (issue 15): load >= 20 GB/s; batch 1 <= 1.15x roofline; batch 8 <=
# 1.25x roofline; prefill no slower than transformers eager.
#   bench/model_gpu.sh BIN_DIR [STEP...]    STEP: ckpt ours hf table (default: all)
# Steps keep their output in $MODEL_GPU_DIR (default /tmp/model_gpu), so a
# time-limited runner can run them in separate calls; `table` writes
# bench/results/model-gpu-<date>-<gpu>.md.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${1:?usage: bench/model_gpu.sh BIN_DIR [ckpt|ours|hf|table]...}"; shift
steps=("$@"); [ ${#steps[@]} -gt 0 ] || steps=(ckpt ours hf table)
W=${MODEL_GPU_DIR:-/tmp/model_gpu}; C=${MODEL_GPU_CKPT:-$W/qwen7b}
mkdir -p "$W"
want() { [[ " ${steps[*]} " == *" $1 "* ]]; }
if want ckpt && [ ! -f "$C/model.safetensors.index.json" ]; then python3 bench/make_qwen7b.py "$C"; fi
if want ours || want hf; then cat "$C"/*.safetensors > /dev/null; fi  # page cache warm for both
want ours && "$BIN/model_gpu" "$C" --device 0 | tee "$W/ours.txt"
want hf && python3 bench/model_gpu_hf.py "$C" | tee "$W/hf.txt"
if want table; then
  gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 || echo unknown)
  date=$(date -u +%Y-%m-%d); slug=$(echo "$gpu" | tr ' ' '-' | tr -cd 'A-Za-z0-9-')
  out="bench/results/model-gpu-$date-$slug.md"
  python3 - "$W/ours.txt" "$W/hf.txt" "$gpu" "$date" > "$out" <<'PY'
import sys
ours, hf, gpu, date = sys.argv[1:5]
def read(path):
    d = {}
    for line in open(path):
        f = line.split()
        if len(f) >= 2:
            d[tuple(f[:-1])] = float(f[-1])
            if f[0] in ("load_rank_s", "st_load_s"):
                d[(f[0],)] = float(f[1]); d[(f[0], "bytes")] = float(f[2])
    return d
o, h = read(ours), read(hf)
wb, bw = h[("weight_bytes",)], h[("copy_GBs",)]
roof = wb / (bw * 1e9) * 1e3
print(f"# bench/model_gpu — {date}, {gpu}\n")
print(f"Qwen2-7B-shaped checkpoint, random bf16 weights ({wb / 1e9:.2f} GB), TP=1 PP=1, page cache warm.")
print(f"Roofline: weight bytes / measured device copy bandwidth ({bw:.0f} GB/s) = {roof:.2f} ms per decode step.\n")
print("| weights to the GPU | seconds | GB/s |")
print("|---|---:|---:|")
for d, k, name in ((o, "load_rank_s", "libtppp tppp_checkpoint_load_rank, device"),
                   (h, "st_load_s", "safetensors load_file(device=\"cuda\")")):
    s, b = d[(k,)], d[(k, "bytes")]
    print(f"| {name} | {s:.3f} | {b / s / 1e9:.1f} |")
print(f"| libtppp tppp_model_create (all weights bound) | {o[('create_s',)]:.3f} | - |\n")
print("| decode step, batch | libtppp ms | transformers eager ms | transformers + compile ms | roofline ms | ours / roofline | compile / ours |")
print("|---:|---:|---:|---:|---:|---:|---:|")
for key in sorted((k for k in o if k[0] == "decode_ms"), key=lambda k: int(k[1])):
    b = key[1]
    ms, e, c = o[key], h.get(("eager_decode_ms", b)), h.get(("compile_decode_ms", b))
    fmt = lambda v: f"{v:.2f}" if v is not None else "-"
    print(f"| {b} | {ms:.2f} | {fmt(e)} | {fmt(c)} | {roof:.2f} | {ms / roof:.2f}x | {fmt(c / ms if c else None)} |")
for key in sorted(k for k in o if k[0] == "prefill_ms"):
    t = key[1]
    e = h.get(("eager_prefill_ms", t))
    print(f"\nPrefill of {t} tokens: libtppp {o[key]:.1f} ms, transformers eager {e:.1f} ms ({e / o[key]:.2f}x).")
PY
  cat "$out"; echo "written to $out" >&2
fi
