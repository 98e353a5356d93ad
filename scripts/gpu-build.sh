#!/usr/bin/env bash
# Builds libtppp for sm_90 on this (CPU) machine and bundles what a GPU
# machine needs into .gpu/ and .gpu.tar.xz (ignored by git; the device tool
# carries the archive):
# stripped test/bench/example binaries, libtppp, and the shared libraries the
# GPU machine's image lacks (UCX with its transport modules, OpenBLAS and its
# Fortran runtime). cuBLASLt and NCCL come from the GPU machine's own CUDA
# wheels (scripts/gpu-check.sh finds them).
#   scripts/gpu-build.sh        then, on the GPU machine:  bash scripts/gpu-check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
B=build-gpu
scripts/fetch-flashinfer.sh  # FlashInfer's attention kernels are part of the GPU build
cmake -S . -B "$B" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTPPP_CUDA=ON -DTPPP_FLASHINFER=ON -DCMAKE_CUDA_ARCHITECTURES=90 >/dev/null
cmake --build "$B" -j"$(nproc)" --target tppp tppp_tests tppp-run tppp_demo pipeline_mlp generate linear_gpu model_gpu
rm -rf .gpu && mkdir -p .gpu/bin .gpu/lib
for f in tests/tppp_tests tppp-run tppp_demo pipeline_mlp generate bench/linear_gpu bench/model_gpu; do
  cp "$B/$f" .gpu/bin/ && strip --strip-debug ".gpu/bin/$(basename "$f")"
done
# Shared libraries outside the CUDA toolkit and glibc, and UCX's modules.
for bin in .gpu/bin/* "$B"/libtppp.so; do ldd "$bin"; done | awk '/=> \//{print $3}' | sort -u |
  grep -Ev '/(libc|libm|libdl|libpthread|librt|libgcc_s|libstdc\+\+|ld-linux[^/]*)\.so|/usr/local/cuda|libcuda\.so|libnccl|libcublas|libtppp' |
  while read -r lib; do cp -L "$lib" .gpu/lib/; done
cp -P "$B"/libtppp.so* .gpu/lib/
strip --strip-debug .gpu/lib/libtppp.so.*.*.*
ucx_mod=$(dirname "$(ldconfig -p | awk '/libucp.so.0 /{print $NF; exit}')")/ucx
[ -d "$ucx_mod" ] && cp -rL "$ucx_mod" .gpu/lib/ucx
# The device tool carries at most 64 MiB: the bundle also goes as one xz
# archive (~11 MB), which scripts/gpu-check.sh unpacks when .gpu/ is absent.
tar -cJf .gpu.tar.xz .gpu
echo "bundle: $(du -sh .gpu | cut -f1) in .gpu/, $(du -sh .gpu.tar.xz | cut -f1) as .gpu.tar.xz (carry that one)"
