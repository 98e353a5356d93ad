#!/usr/bin/env bash
# Fetches FlashInfer's C++ headers (header-only CUDA kernels; the attention
# kernels SGLang and vLLM use) and the newer CCCL headers they need, pinned
# by version and sha256, from the wheels on PyPI, and unpacks only the
# headers into third_party/ (ignored by git). CMake compiles the attention
# instantiations in kernels/ when they are there (TPPP_FLASHINFER=AUTO).
# CUDA 13.0's own CCCL lacks cuda::fast_mod_div, so the nvidia-cuda-cccl
# headers go first on the include path of those files only.
#   scripts/fetch-flashinfer.sh         (idempotent; quiet when done)
set -euo pipefail
cd "$(dirname "$0")/.."
FI_VER=0.7.2.post1
FI_SHA=bfdc18b9e1e4d8d0730fe4343dc0e284cd0c160086de80f99888bc4867922d49
CCCL_VER=13.3.5.0.6
CCCL_SHA=d5230098fa2df5021e1a00c0c4eee41797671a91119d31e892463e5ccf3ee326
T=third_party
stamp="$T/flashinfer/VERSION"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "flashinfer-python $FI_VER, nvidia-cuda-cccl $CCCL_VER" ]; then exit 0; fi
dl=$(mktemp -d)
trap 'rm -rf "$dl"' EXIT
echo "fetching flashinfer-python $FI_VER and nvidia-cuda-cccl $CCCL_VER headers (pip download)"
python3 -m pip download -q --disable-pip-version-check --no-deps -d "$dl" "flashinfer-python==$FI_VER" \
  "nvidia-cuda-cccl==$CCCL_VER" --platform manylinux2014_x86_64 --only-binary=:all: >/dev/null
check() {  # check WHEEL SHA
  local got; got=$(sha256sum "$1" | cut -d' ' -f1)
  [ "$got" = "$2" ] || { echo "sha256 mismatch for $(basename "$1"): $got, expected $2"; exit 1; }
}
fi_whl=$(ls "$dl"/flashinfer_python-*.whl); cccl_whl=$(ls "$dl"/nvidia_cuda_cccl-*.whl)
check "$fi_whl" "$FI_SHA"; check "$cccl_whl" "$CCCL_SHA"
rm -rf "$T/flashinfer" "$T/cccl" && mkdir -p "$T/flashinfer/include" "$T/cccl/include"
# FlashInfer: the top-level headers and the attention kernels (not the
# Blackwell, GEMM, MoE or communication trees).
python3 - "$fi_whl" "$T/flashinfer/include" <<'PY'
import sys, zipfile, os
whl, out = sys.argv[1], sys.argv[2]
pre = "flashinfer/data/include/"
skip = ("flashinfer/attention/blackwell/",)
with zipfile.ZipFile(whl) as z:
    for n in z.namelist():
        if not n.startswith(pre) or n.endswith("/"):
            continue
        rel = n[len(pre):]
        parts = rel.split("/")
        keep = (len(parts) == 2 and parts[0] == "flashinfer") or \
               (rel.startswith("flashinfer/attention/") and not rel.startswith(skip))
        if keep:
            dst = os.path.join(out, rel)
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            with open(dst, "wb") as f:
                f.write(z.read(n))
PY
python3 - "$cccl_whl" "$T/cccl/include" <<'PY'
import sys, zipfile, os
whl, out = sys.argv[1], sys.argv[2]
pre = "nvidia/cu13/include/cccl/"
with zipfile.ZipFile(whl) as z:
    for n in z.namelist():
        if n.startswith(pre) and not n.endswith("/"):
            dst = os.path.join(out, n[len(pre):])
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            with open(dst, "wb") as f:
                f.write(z.read(n))
PY
echo "flashinfer-python $FI_VER, nvidia-cuda-cccl $CCCL_VER" > "$stamp"
echo "headers in $T/flashinfer/include and $T/cccl/include ($(du -sh "$T" | cut -f1))"
