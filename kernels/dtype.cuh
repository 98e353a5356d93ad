// Device-side float loads/stores for the three float dtypes (f32 arithmetic).
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "c_api.h"

namespace tppp_kernels {

template <typename T>
struct F;
template <>
struct F<float> {
  static __device__ __forceinline__ float ld(const float* p) { return *p; }
  static __device__ __forceinline__ void st(float* p, float v) { *p = v; }
};
template <>
struct F<__half> {
  static __device__ __forceinline__ float ld(const __half* p) { return __half2float(*p); }
  static __device__ __forceinline__ void st(__half* p, float v) { *p = __float2half_rn(v); }
};
template <>
struct F<__nv_bfloat16> {
  static __device__ __forceinline__ float ld(const __nv_bfloat16* p) { return __bfloat162float(*p); }
  static __device__ __forceinline__ void st(__nv_bfloat16* p, float v) { *p = __float2bfloat16_rn(v); }
};

// v rounded to T's precision, back in f32 (where transformers rounds).
template <typename T>
__device__ __forceinline__ float rnd(float v) {
  T t;
  F<T>::st(&t, v);
  return F<T>::ld(&t);
}

// Calls fn(T{}) with T the C++ type of a float dtype; cudaErrorInvalidValue otherwise.
template <typename Fn>
cudaError_t with_float_type(int32_t dt, Fn&& fn) {
  switch (dt) {
    case TPPP_DTYPE_F32: return fn(float{});
    case TPPP_DTYPE_F16: return fn(__half{});
    case TPPP_DTYPE_BF16: return fn(__nv_bfloat16{});
    default: return cudaErrorInvalidValue;
  }
}

// Blocks for a grid-stride loop over n elements.
inline unsigned grid_for(int64_t n, int threads) {
  int64_t b = (n + threads - 1) / threads;
  return static_cast<unsigned>(b < 1 ? 1 : (b > 65536 ? 65536 : b));
}

}  // namespace tppp_kernels
