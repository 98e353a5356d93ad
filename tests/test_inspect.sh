#!/usr/bin/env bash
# tppp-inspect: lists a valid checkpoint, shows per-rank slices, fails with
# the error on a bad file. Args: tppp-inspect, fixtures dir.
set -u
bin="$1"; fix="$2"; fail=0; pass=0
check() { if eval "$2"; then pass=$((pass+1)); else echo "FAIL: $1"; fail=$((fail+1)); fi; }
out=$("$bin" "$fix/qwen2" 2>&1); rc=$?
check "valid checkpoint exits 0 (rc $rc)" '[ $rc -eq 0 ]'
check "lists tensors with dtype and shape" '[[ "$out" == *"model.layers.0.self_attn.q_proj.bias"*"F32"*"[32]"* ]]'
check "says valid" '[[ "$out" == *"39 tensors"*"valid"* ]]'
out=$("$bin" "$fix/llama" --tp 2 --pp 2 2>&1); rc=$?
check "grid view exits 0" '[ $rc -eq 0 ]'
check "shows rank 3" '[[ "$out" == *"rank 3 (tp 1/2, pp 1/2)"* ]]'
check "tied lm_head on the last stage" '[[ "$out" == *"lm_head.weight"*"tied: reads model.embed_tokens.weight"* ]]'
out=$("$bin" "$fix/qwen2" --tp 3 2>&1); rc=$?
check "indivisible tp fails (rc $rc)" '[ $rc -eq 1 ] && [[ "$out" == *"not divisible by tp 3"* ]]'
out=$("$bin" "$fix/bad/overlap.safetensors" 2>&1); rc=$?
check "bad file fails with the reason (rc $rc)" '[ $rc -eq 1 ] && [[ "$out" == *"overlap"* ]]'
"$bin" >/dev/null 2>&1; rc=$?
check "no path is a usage error" '[ $rc -eq 2 ]'
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
