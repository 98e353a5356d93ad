// SiLU(gate)*up, bias add and dtype conversion: memory-bound grid-stride loops.
#include "dtype.cuh"
#include "tppp_kernels.h"

namespace tppp_kernels {
namespace {

template <typename T>
__global__ void silu_mul_k(const T* __restrict__ gu, T* __restrict__ out, int64_t m, int64_t i) {
  const int64_t total = m * i;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < total; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = e / i, c = e - r * i;
    const float g = F<T>::ld(gu + r * 2 * i + c), u = F<T>::ld(gu + r * 2 * i + i + c);
    F<T>::st(out + e, g / (1.0f + __expf(-g)) * u);
  }
}

template <typename Y, typename B>
__global__ void add_bias_k(Y* __restrict__ y, const B* __restrict__ b, int64_t m, int64_t n) {
  const int64_t total = m * n;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < total; e += int64_t(gridDim.x) * blockDim.x)
    F<Y>::st(y + e, F<Y>::ld(y + e) + F<B>::ld(b + e % n));
}

template <typename S, typename D>
__global__ void convert_k(const S* src, D* dst, int64_t n) {
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < n; e += int64_t(gridDim.x) * blockDim.x)
    F<D>::st(dst + e, F<S>::ld(src + e));
}

constexpr int kThreads = 256;

}  // namespace

cudaError_t silu_mul(const void* gu, void* out, int64_t m, int64_t i, int32_t dt, cudaStream_t s) {
  if (m * i == 0) return cudaSuccess;
  return with_float_type(dt, [&](auto t) {
    using T = decltype(t);
    silu_mul_k<T><<<grid_for(m * i, kThreads), kThreads, 0, s>>>(static_cast<const T*>(gu), static_cast<T*>(out), m, i);
    return cudaGetLastError();
  });
}

cudaError_t add_bias(void* y, int32_t ydt, const void* bias, int32_t bdt, int64_t m, int64_t n, cudaStream_t s) {
  if (m * n == 0) return cudaSuccess;
  return with_float_type(ydt, [&](auto yt) {
    using Y = decltype(yt);
    return with_float_type(bdt, [&](auto bt) {
      using B = decltype(bt);
      add_bias_k<Y, B><<<grid_for(m * n, kThreads), kThreads, 0, s>>>(static_cast<Y*>(y), static_cast<const B*>(bias),
                                                                         m, n);
      return cudaGetLastError();
    });
  });
}

cudaError_t convert(const void* src, int32_t sdt, void* dst, int32_t ddt, int64_t n, cudaStream_t s) {
  if (n == 0) return cudaSuccess;
  return with_float_type(sdt, [&](auto st) {
    using S = decltype(st);
    return with_float_type(ddt, [&](auto dt) {
      using D = decltype(dt);
      convert_k<S, D><<<grid_for(n, kThreads), kThreads, 0, s>>>(static_cast<const S*>(src), static_cast<D*>(dst), n);
      return cudaGetLastError();
    });
  });
}

}  // namespace tppp_kernels
