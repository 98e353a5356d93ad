#!/usr/bin/env bash
# The GPU checks of the CUDA backend, on a machine with one H100/H200 and no
# network, from the bundle scripts/gpu-build.sh made (.gpu/): every layer test
# on the CUDA backend (TP 1, 2, 4 ranks sharing the GPU over UCX) against the
# float64 reference, the CUDA suite (each backend op against the CPU backend,
# graph capture, NCCL at world size 1, device buffers over UCX in TP and PP
# grids; the decoder ops, FlashInfer's attention and whole models against the
# CPU oracle and transformers, with steps in flight and seeded sampling;
# the rank-wide load into device memory),
# compute-sanitizer memcheck on the CUDA suite, the GPU benchmarks (linear:
# bench/results/linear-gpu-<date>-<gpu>.md; model: bench/model_gpu.sh, steps
# model-ckpt, model-ours, model-hf, model-table), and a summary table last.
#   bash scripts/gpu-check.sh [--quick] [STEP...]     (under 10 minutes per step on an H100)
# STEP: first, logic, cuda, layers, memcheck, python, bench, model-ckpt, model-ours,
# model-hf, model-table (default: first cuda layers memcheck python bench);
# naming some splits the run over several calls of a time-limited runner.
# `first` (under 8 minutes) is what matters most when a GPU is lent for
# minutes: the logic suites, the CUDA suite's FlashInfer, decoder-op, graph,
# capture and NCCL cases, and generate against transformers on two grids;
# `cuda` runs the rest of the CUDA suite and the other grids (never the
# same case twice, also when the steps are split over several calls).
set -uo pipefail
quick=(); steps=()
for a in "$@"; do
  case $a in
    --quick) quick=(--quick) ;;
    first|logic|cuda|layers|memcheck|python|bench|model-ckpt|model-ours|model-hf|model-table) steps+=("$a") ;;
    *) echo "unknown argument '$a' (steps: first logic cuda layers memcheck python bench model-ckpt model-ours model-hf model-table; option: --quick)"; exit 2 ;;
  esac
done
[ ${#steps[@]} -gt 0 ] || steps=(first cuda layers memcheck python bench)
want() { [[ " ${steps[*]} " == *" $1 "* ]]; }
cd "$(dirname "$0")/.." || exit 2
G=$PWD/.gpu
[ -x "$G/bin/tppp_tests" ] || [ ! -f .gpu.tar.xz ] || tar -xJf .gpu.tar.xz
[ -x "$G/bin/tppp_tests" ] || { echo "no bundle in .gpu/ or .gpu.tar.xz: run scripts/gpu-build.sh first"; exit 2; }
# cuBLASLt and NCCL from the image's CUDA wheels (or its toolkit).
extra=$(python3 - <<'PY' 2>/dev/null
import glob, os, site
dirs = set()
for sp in site.getsitepackages():
    for pat in ("nvidia/cublas/lib/libcublasLt.so*", "nvidia/nccl/lib/libnccl.so*", "nvidia/cu13/lib/libcublasLt.so*", "nvidia/cu13/lib/libnccl.so*"):
        dirs.update(os.path.dirname(p) for p in glob.glob(os.path.join(sp, pat)))
print(":".join(sorted(dirs)))
PY
)
export LD_LIBRARY_PATH="$G/lib:${extra}:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
export UCX_MODULE_DIR="$G/lib/ucx" PATH="$G/bin:$PATH" TPPP_TEST_DEVICE=0
# The tests find their fixtures at the path they were built with.
fixtures=$(strings "$G/bin/tppp_tests" | grep -m1 '/tests/fixtures/data$' || true)
if [ -n "$fixtures" ] && [ ! -e "$fixtures" ]; then mkdir -p "$(dirname "$fixtures")" && ln -sfn "$PWD/tests/fixtures/data" "$fixtures"; fi
declare -a names results
step() {  # step NAME COMMAND...: runs, records PASS/FAIL and the seconds taken
  local name=$1; shift
  echo; echo "=== $name"
  local t0=$SECONDS
  if "$@"; then results+=("PASS"); else results+=("FAIL"); fi
  names+=("$name ($((SECONDS - t0)) s)")
}
nvidia-smi -L || true
ldd "$G/bin/tppp_tests" | grep -E "not found|cublasLt|nccl" || true
# The CUDA suite's cases that `first` runs (doctest wildcards, any case).
first_cases='*FlashInfer*,*decoder ops*,*graph*,*capture*,*NCCL*'
gen_gpu() {  # gen_gpu "MODEL TP PP"...: examples/generate on the GPU, greedy tokens vs transformers (f32 fixtures)
  local fx=$PWD/tests/fixtures/data/models rc=0 m tp pp out
  for c in "$@"; do
    read -r m tp pp <<<"$c"
    out=$(tppp-run -n $((tp * pp)) --timeout 300 -- generate "$fx/$m" --tp "$tp" --pp "$pp" --device 0 --reference \
          --max-new 24 2>&1)
    if grep -q "matches transformers' greedy tokens: yes" <<<"$out"; then echo "ok $m tp=$tp pp=$pp";
    else echo "FAIL $m tp=$tp pp=$pp"; echo "$out" | tail -5; rc=1; fi
  done
  return $rc
}
if want first; then
  step "first: cuda_logic + c_api + sampling suites" tppp_tests --test-suite=cuda_logic,c_api,sampling
  step "first: CUDA suite's FlashInfer, decoder-op, graph, capture, NCCL cases" \
    tppp_tests --test-suite=cuda --test-case="$first_cases"
  step "first: examples/generate on the GPU vs transformers (qwen3 1x1, llama 2x2)" gen_gpu "qwen3 1 1" "llama 2 2"
fi
want logic && step "cuda_logic + c_api + sampling suites" tppp_tests --test-suite=cuda_logic,c_api,sampling
want cuda && step "CUDA suite: all but first's cases (ops vs CPU, shared GPU TP/PP, loader, deadlines, models)" \
  tppp_tests --test-suite=cuda --test-case-exclude="$first_cases"
want layers && step "layer tests on CUDA, TP 1/2/4 on one GPU" tppp_tests --test-suite=layers
if want memcheck; then
  # compute-sanitizer may refuse the GPU (an H200 with an older sanitizer:
  # "Device not supported"): a short probe first, NOT RUN rather than FAIL.
  probe=$(command -v compute-sanitizer >/dev/null &&
          timeout 180 compute-sanitizer --tool memcheck tppp_tests --test-suite=cuda --test-case='*deadlines*' 2>&1)
  if ! command -v compute-sanitizer >/dev/null; then
    names+=("compute-sanitizer"); results+=("NOT RUN (not installed)")
  elif grep -qiE "device not supported|not supported on this device|unsupported device" <<<"$probe"; then
    names+=("compute-sanitizer"); results+=("NOT RUN ($(grep -m1 -iE 'not supported|unsupported' <<<"$probe" | cut -c1-60))")
  else
    # The tests must pass under memcheck, and every report but NCCL's init
    # probes (scripts/memcheck_filter.py) fails the step.
    memcheck() {
      local log=/tmp/tppp-memcheck.log
      compute-sanitizer --tool memcheck --target-processes all --leak-check full --report-api-errors all \
        tppp_tests --test-suite=cuda,layers --test-case-exclude='*sharing*,*TP=2,*TP=4' 2>&1 | tee "$log"
      local rc=${PIPESTATUS[0]}
      python3 scripts/memcheck_filter.py "$log" && [ "$rc" = 0 ]
    }
    step "compute-sanitizer memcheck, CUDA suite + TP=1 layer tests" memcheck
  fi
fi
want cuda && step "examples/generate on the GPU vs transformers (f32, first's grids aside)" gen_gpu \
  "llama 1 1" "llama 2 1" "llama 1 2" "qwen2 1 1" "qwen2 2 1" "qwen2 1 2" "qwen2 2 2" "qwen3 2 1" "qwen3 1 2" "qwen3 2 2"
want python && step "Python binding: torch CUDA tensors through DLPack" env TPPP_LIBRARY="$G/lib" \
  PYTHONPATH="$PWD/bindings/python" python3 bindings/python/tests/dlpack_cuda.py
want bench && step "GPU benchmark vs torch" bench/linear_gpu.sh "$G/bin" "${quick[@]}"
for m in ckpt ours hf table; do
  want "model-$m" && step "bench/model_gpu: $m" bench/model_gpu.sh "$G/bin" "$m"
done
echo; echo "=== summary ($(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1))"
printf '| %-70s | %s |\n' "check" "result"
fail=0
for i in "${!names[@]}"; do
  printf '| %-70s | %s |\n' "${names[$i]}" "${results[$i]}"
  [ "${results[$i]}" = FAIL ] && fail=1
done
exit $fail
