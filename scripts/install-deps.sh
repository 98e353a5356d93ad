#!/usr/bin/env bash
# Installs what a fresh Debian 12 machine lacks to build and test libtppp.
# Idempotent; quiet when everything is already there. CUDA (nvcc, NCCL,
# cuBLASLt) is optional and expected in /usr/local/cuda when wanted.
set -euo pipefail
pkgs=(build-essential cmake pkg-config libucx-dev ucx-utils doctest-dev nlohmann-json3-dev libopenblas-dev openmpi-bin libopenmpi-dev python3-pip python3-venv procps golang-go iproute2 util-linux)
[ "${TPPP_WITH_CLANG:-0}" = 1 ] && pkgs+=(clang libclang-rt-14-dev)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Python side: numpy + pytest for the binding's tests (safetensors for the
# fixture writer and the loader benchmark; setuptools + wheel so the test
# can pip-install bindings/python without fetching a build backend); gguf
# to make the real model's checkpoint (scripts/fetch-model.sh), tokenizers
# + jinja2 for text in and out (tppp.text), openai for the server's tests.
if ! python3 -c "import numpy, pytest, safetensors, setuptools, wheel, gguf, tokenizers, jinja2, openai" >/dev/null 2>&1; then
  echo "installing: numpy pytest safetensors setuptools wheel gguf tokenizers jinja2 openai (pip)"
  PIP_ROOT_USER_ACTION=ignore python3 -m pip install -q --disable-pip-version-check numpy pytest safetensors \
    setuptools wheel gguf tokenizers jinja2 openai >/dev/null
fi
# FlashInfer's attention headers (pinned wheels from PyPI) when CUDA is here.
# Optional: without them the CUDA backend attends with its generic kernel.
if [ -x /usr/local/cuda/bin/nvcc ] || command -v nvcc >/dev/null 2>&1; then
  "$(dirname "$0")/fetch-flashinfer.sh" || echo "FlashInfer's headers were not fetched: CUDA attention uses the generic kernel"
fi
