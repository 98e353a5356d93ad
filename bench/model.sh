#!/usr/bin/env bash
# bench/model: the model runtime on the CPU, prefill and decode tokens/s of
# a random Qwen2 (4 layers, hidden 1024, f32; bench/make_bench_model.py) for
# TP x PP in {1x1, 2x1, 1x2, 2x2}, beside transformers on the same machine,
# weights, prompts and total threads, in the same run; and the decode step
# (tppp_model_forward of one token per sequence) beside the sum of the
# GEMVs it cannot avoid (cblas_sgemm on this grid's shard shapes, same
# threads per process): the difference is the runtime's overhead.
#   bench/model.sh [build-dir]     needs torch + transformers: $HF_PY, else
#                                  /opt/hfenv/bin/python, else python3
#   -> bench/results/model-<date>-<host>.md
set -euo pipefail
cd "$(dirname "$0")/.."
B="${1:-build}"
run="$B/tppp-run"; mb="$B/bench/model_bench"
[ -x "$mb" ] || { echo "missing $mb: build first"; exit 1; }
py="${HF_PY:-}"
for c in /opt/hfenv/bin/python python3; do
  [ -n "$py" ] && break
  if "$c" -c "import torch, transformers" 2>/dev/null; then py=$c; fi
done
[ -n "$py" ] || { echo "bench/model needs torch and transformers (pip install torch transformers safetensors)"; exit 1; }
ckpt="${TPPP_BENCH_MODEL:-/tmp/tppp-bench-model}"
[ -f "$ckpt/model.safetensors" ] || "$py" bench/make_bench_model.py "$ckpt" >/dev/null
BATCH=4 PROMPT=128 STEPS=32 REPS=3
cores=$(nproc)
read -r H I L NH KV V < <(python3 -c "import json; c=json.load(open('$ckpt/config.json'));
print(c['hidden_size'], c['intermediate_size'], c['num_hidden_layers'], c['num_attention_heads'], c['num_key_value_heads'], c['vocab_size'])")
HD=$((H / NH))
host=$(hostname); date=$(date -u +%Y-%m-%d)
out="bench/results/model-$date-$host.md"
rows=""
# /g2: two decode groups (microbatches 2, one per stage) instead of the default (min(P, sequences / 16) = 1 here).
for grid in 1x1 2x1 1x2 2x2 1x2/g2 2x2/g2; do
  g=${grid#*/}; [ "$g" != "$grid" ] && mbs=${g#g} || mbs=0
  tp=${grid%%x*}; pp=${grid#*x}; pp=${pp%%/*}; w=$((tp * pp))
  th=$((cores / w)); [ "$th" -ge 1 ] || th=1
  res=$(OPENBLAS_NUM_THREADS=$th "$run" -n $w --timeout 900 -- "$mb" "$ckpt" --tp $tp --pp $pp --batch $BATCH \
        --prompt $PROMPT --steps $STEPS --reps $REPS --microbatches $mbs | sed 's/^\[[0-9]*\] //')
  # One decode step's GEMVs on one TP rank, every layer (the stages run in turn), plus the LM head.
  shapes="$H:$(((NH + 2 * KV) * HD / tp)):$L,$((NH * HD / tp)):$H:$L,$H:$((2 * I / tp)):$L,$((I / tp)):$H:$L,$H:$((V / tp))"
  gemv=$(OPENBLAS_NUM_THREADS=$th "$mb" --gemv $BATCH "$shapes" | awk '{print $2}')
  read -r _ pre dec < <(grep '^gen' <<<"$res"); step=$(awk '/^step/ {print $2}' <<<"$res")
  rows+="$grid $w $th $pre $dec $step $gemv"$'\n'
done
hf=$("$py" bench/model_hf.py "$ckpt" $BATCH $PROMPT $STEPS $REPS "$cores" 2>/dev/null)
read -r _ hpre hdec < <(grep '^gen' <<<"$hf"); hstep=$(awk '/^step/ {print $2}' <<<"$hf")
tv=$("$py" -c "import torch, transformers; print(f'torch {torch.__version__}, transformers {transformers.__version__}')")
{
  echo "# bench/model — $date, host $host ($cores cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'))"
  echo
  echo "Random Qwen2ForCausalLM, $L layers, hidden $H, $NH heads / $KV kv heads, intermediate $I, vocab $V, f32."
  echo "$BATCH sequences of $PROMPT prompt tokens; decode = $STEPS more tokens each. libtppp: tppp_model_generate"
  echo "with max_new 1 (prefill tok/s) and 1 + $STEPS (decode tok/s from the difference), best of $REPS; one"
  echo "process per rank over UCX, OpenBLAS threads = $cores / ranks. transformers ($tv): generate() with"
  echo "the same prompts, max/min_new_tokens the same, torch threads = $cores, same run."
  echo "Decode step = one tppp_model_forward of $BATCH tokens (one per sequence; the stages in turn), median;"
  echo "GEMV sum = cblas_sgemm [$BATCH, K] x [N, K]^T of every layer's shards on one TP rank + the LM head"
  echo "shard, same threads per process; overhead = step - GEMV sum (norms, RoPE, attention, TP all-reduces,"
  echo "stage hand-over, process scheduling). Decode groups: the default, min(P, sequences / 16) = 1 here;"
  echo "/g2: microbatches = 2 (one group per stage). Prompt chunks: the default (PP > 1: 512 tokens / 2P = 128)."
  echo
  echo "| TP x PP | ranks | threads/rank | prefill tok/s | vs transformers | decode tok/s | vs transformers | decode step ms | GEMV sum ms | overhead |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  while read -r grid w th pre dec step gemv; do
    [ -n "$grid" ] || continue
    echo "| $grid | $w | $th | $pre | $(awk -v a="$pre" -v b="$hpre" 'BEGIN{printf "%.2fx", a/b}') | $dec |" \
         "$(awk -v a="$dec" -v b="$hdec" 'BEGIN{printf "%.2fx", a/b}') | $step | $gemv |" \
         "$(awk -v a="$step" -v b="$gemv" 'BEGIN{printf "%.1f ms (%.0f%%)", a-b, (a-b)/a*100}') |"
  done <<<"$rows"
  echo "| transformers | 1 | $cores | $hpre | 1.00x | $hdec | 1.00x | $hstep | | |"
} | tee "$out"
echo "written to $out" >&2
