// Shared by the GPU suites (test_cuda.cpp, test_cuda_model.cpp): the skip
// when no GPU is named, device copies of host bytes, random inputs, and the
// relative error against the CPU backend's output. CUDA builds only.
#pragma once
#ifdef TPPP_HAVE_CUDA
#include <cuda_runtime_api.h>
#include <doctest/doctest.h>

#include <cstdint>
#include <vector>

#include "core/dtype.hpp"
#include "harness.hpp"

namespace cu {

inline bool skip_without_gpu() {
  if (th::test_device() >= 0) return false;
  MESSAGE("TPPP_TEST_DEVICE is not set (no GPU here): skipped; scripts/gpu-check.sh runs it on a GPU");
  return true;
}

// A device buffer, optionally a copy of host data.
struct Dev {
  void* p = nullptr;
  size_t n = 0;
  explicit Dev(size_t bytes) : n(bytes) { cudaMalloc(&p, bytes ? bytes : 1); }
  template <typename T>
  explicit Dev(const std::vector<T>& h) : Dev(h.size() * sizeof(T)) {
    cudaMemcpy(p, h.data(), n, cudaMemcpyHostToDevice);
  }
  Dev(const Dev&) = delete;
  Dev& operator=(const Dev&) = delete;
  ~Dev() { cudaFree(p); }
  std::vector<char> get() const {
    std::vector<char> h(n);
    cudaDeviceSynchronize();
    cudaMemcpy(h.data(), p, n, cudaMemcpyDeviceToHost);
    return h;
  }
  void poison() { cudaMemset(p, 0xff, n); }
};

inline std::vector<char> rnd(int32_t dt, uint64_t seed, size_t n, double scale = 1.0) {
  std::vector<char> b(n * tppp::dtype_size(dt));
  for (size_t i = 0; i < n; i++) th::store(dt, b.data(), i, th::value(dt, seed, 0, i) * scale);
  return b;
}

// Relative error of got against the CPU backend's output `want` (both dt).
inline double rel(int32_t dt, const std::vector<char>& got, const std::vector<char>& want) {
  std::vector<double> ref(want.size() / tppp::dtype_size(dt));
  for (size_t i = 0; i < ref.size(); i++) ref[i] = th::load(dt, want.data(), i);
  return th::rel_err(dt, got.data(), ref);
}

}  // namespace cu
#endif
