#!/usr/bin/env bash
# examples/generate.c under tppp-run for each fixture model on every TP x PP
# grid in {1,2,4} x {1,2,3} that the model divides (heads over tp, layers
# over pp): its greedy tokens must equal transformers' (--reference exits 1
# on a mismatch), and --dump-logits must write [prompts, vocab] f32. Then
# follow mode and other micro-batch groupings and prompt chunks; a seeded
# sampled run gives the same tokens on two grids.
# Args: tppp-run, generate, fixtures dir.
set -uo pipefail
run=$1 gen=$2 fx=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0 n=0
for m in llama qwen2 qwen3; do
  layers=$(python3 -c "import json;print(json.load(open('$fx/models/$m/config.json'))['num_hidden_layers'])")
  for tp in 1 2 4; do
    for pp in 1 2 3; do
      [ "$pp" -le "$layers" ] || continue
      n=$((n + 1))
      out=$("$run" -n $((tp * pp)) --timeout 120 -- "$gen" "$fx/models/$m" --tp $tp --pp $pp --reference --max-new 24 \
            --dump-logits "$tmp/l.bin" 2>&1)
      if [ $? -ne 0 ] || ! grep -q "matches transformers' greedy tokens: yes" <<<"$out"; then
        echo "FAIL $m tp=$tp pp=$pp"; echo "$out" | tail -5; fail=$((fail + 1)); continue
      fi
      vocab=$(python3 -c "import json;print(json.load(open('$fx/models/$m/config.json'))['vocab_size'])")
      size=$(stat -c %s "$tmp/l.bin")
      if [ "$size" -ne $((3 * vocab * 4)) ]; then echo "FAIL $m tp=$tp pp=$pp: logits file of $size bytes"; fail=$((fail + 1)); continue; fi
      echo "ok $m tp=$tp pp=$pp"
    done
  done
done
for extra in "qwen3 2 2 --follow --chunk 3" "llama 1 3 --microbatches 1 --chunk 1" "qwen2 1 2 --follow --microbatches 3"; do
  read -r m tp pp opts <<<"$extra"
  n=$((n + 1))
  out=$("$run" -n $((tp * pp)) --timeout 120 -- "$gen" "$fx/models/$m" --tp $tp --pp $pp --reference --max-new 24 $opts 2>&1)
  if [ $? -ne 0 ] || ! grep -q "matches transformers' greedy tokens: yes" <<<"$out"; then
    echo "FAIL $m tp=$tp pp=$pp $opts"; echo "$out" | tail -5; fail=$((fail + 1)); continue
  fi
  echo "ok $m tp=$tp pp=$pp $opts"
done
# Sampling flags: a seed gives the same tokens on two grids, and they are not the greedy ones.
samp="--max-new 16 --temperature 0.9 --top-k 40 --top-p 0.95 --min-p 0.01 --seed 77 --reference"
a=$("$run" -n 2 --timeout 120 -- "$gen" "$fx/models/qwen2" --tp 1 --pp 2 $samp 2>&1 | grep "tokens:")
b=$("$run" -n 4 --timeout 120 -- "$gen" "$fx/models/qwen2" --tp 2 --pp 2 --chunk 3 $samp 2>&1 | grep "tokens:")
g=$("$run" -n 2 --timeout 120 -- "$gen" "$fx/models/qwen2" --tp 1 --pp 2 --max-new 16 2>&1 | grep "tokens:")
n=$((n + 1))
if [ -z "$a" ] || [ "$a" != "$b" ] || [ "$a" = "$g" ]; then
  echo "FAIL sampling: tp1xpp2 / tp2xpp2 / greedy:"; echo "$a"; echo "$b"; echo "$g"; fail=$((fail + 1))
else
  echo "ok sampling with a seed: the same tokens on tp1xpp2 and tp2xpp2"
fi
echo "$((n - fail)) passed, $fail failed"
[ "$fail" -eq 0 ]
