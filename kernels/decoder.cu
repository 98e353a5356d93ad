// The decoder ops around the GEMMs (docs/DESIGN.md section 9): RMSNorm fused
// with the residual add, per-head q/k RMSNorm, rotate-half RoPE, the paged KV
// write, and a generic paged attention. Each rounds where the CPU oracle
// (backend/cpu/decoder_ops.cpp) and transformers round, so f32 runs give the
// same tokens. The attention here serves what FlashInfer's instantiations
// (kernels/flashinfer_attention.cu) do not: f32, any head_dim up to 256, any
// GQA group; it is one block per (token, query head) with an online softmax
// per warp, correct rather than fast.
#include <math.h>

#include "dtype.cuh"
#include "tppp_kernels.h"

namespace tppp_kernels {
namespace {

constexpr int kNormThreads = 256;

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024).
__device__ float block_sum(float v) {
  __shared__ float part[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  v = warp_sum(v);
  __syncthreads();  // part[] may still be read by a previous call
  if (lane == 0) part[warp] = v;
  __syncthreads();
  v = lane < warps ? part[lane] : 0.0f;
  return warp_sum(v);
}

// One block per row: v = x (+ residual, rounded and stored back), then
// out = round(v / rms(v)) * w.
template <typename T>
__global__ void rms_norm_k(const T* __restrict__ x, T* residual, const T* __restrict__ w, T* __restrict__ out,
                           int64_t h, float eps) {
  const int64_t row = blockIdx.x;
  const T* xr = x + row * h;
  T* rr = residual ? residual + row * h : nullptr;
  T* orow = out + row * h;
  float ss = 0.0f;
  for (int64_t i = threadIdx.x; i < h; i += blockDim.x) {
    float v = F<T>::ld(xr + i);
    if (rr) {
      v = rnd<T>(v + F<T>::ld(rr + i));
      F<T>::st(rr + i, v);
    }
    ss += v * v;
  }
  const float inv = rsqrtf(block_sum(ss) / static_cast<float>(h) + eps);
  for (int64_t i = threadIdx.x; i < h; i += blockDim.x) {
    const float v = rr ? F<T>::ld(rr + i) : F<T>::ld(xr + i);  // this thread wrote rr[i]
    F<T>::st(orow + i, rnd<T>(v * inv) * F<T>::ld(w + i));
  }
}

// One warp per (row, head), in place.
template <typename T>
__global__ void head_rms_norm_k(T* x, int64_t m, int64_t n, int64_t d, int64_t ld, const T* __restrict__ w,
                                float eps) {
  const int64_t warp = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) >> 5;
  const int lane = threadIdx.x & 31;
  if (warp >= m * n) return;
  T* v = x + (warp / n) * ld + (warp % n) * d;
  float ss = 0.0f;
  for (int64_t i = lane; i < d; i += 32) {
    const float a = F<T>::ld(v + i);
    ss += a * a;
  }
  const float inv = rsqrtf(warp_sum(ss) / static_cast<float>(d) + eps);
  for (int64_t i = lane; i < d; i += 32) F<T>::st(v + i, rnd<T>(F<T>::ld(v + i) * inv) * F<T>::ld(w + i));
}

// One thread per (row, i < d/2): the angle in f32 as transformers computes
// it, cos/sin in double then rounded to T (the oracle's rule), applied to
// the pair (i, i + d/2) of every head.
template <typename T>
__global__ void rope_k(T* x, int64_t m, int64_t n, int64_t d, int64_t ld, const int32_t* __restrict__ pos,
                       const float* __restrict__ inv_freq) {
  const int64_t half = d / 2, e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (e >= m * half) return;
  const int64_t row = e / half, i = e % half;
  const float ang = static_cast<float>(pos[row]) * inv_freq[i];
  const float c = rnd<T>(static_cast<float>(cos(static_cast<double>(ang))));
  const float s = rnd<T>(static_cast<float>(sin(static_cast<double>(ang))));
  for (int64_t hd = 0; hd < n; hd++) {
    T* v = x + row * ld + hd * d;
    const float a = F<T>::ld(v + i), b = F<T>::ld(v + i + half);
    F<T>::st(v + i, a * c - b * s);
    F<T>::st(v + i + half, b * c + a * s);
  }
}

// Row r of k and v (stride ld elements) to slot[r] of the caches, in
// 2-byte units (every float dtype is a multiple of 2 bytes).
__global__ void kv_write_k(const uint16_t* k, const uint16_t* v, int64_t ld, int64_t m, int64_t row,
                           const int32_t* __restrict__ slot, uint16_t* kc, uint16_t* vc) {
  const int64_t total = m * row;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < total; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = e / row, c = e % row, dst = static_cast<int64_t>(slot[r]) * row + c;
    kc[dst] = k[r * ld + c];
    vc[dst] = v[r * ld + c];
  }
}

constexpr int kAttnWarps = 4;
constexpr int kMaxD = 256;
constexpr int kPer = kMaxD / 32;  // output elements per lane

// One block per (token, query head). Warp w takes positions w, w + 4, ...;
// per position the lanes split the dot product, then an online softmax
// keeps (max, sum, acc) per warp; the warps merge at the end.
template <typename T>
__global__ void attention_k(const T* __restrict__ q, int64_t ldq, int64_t nh, int64_t kvh, int64_t d,
                            const T* __restrict__ kc, const T* __restrict__ vc, int64_t page_size,
                            const int32_t* __restrict__ kv_len, const int32_t* __restrict__ page_off,
                            const int32_t* __restrict__ pages, float scale, T* __restrict__ out) {
  __shared__ float qs[kMaxD];
  __shared__ float wm[kAttnWarps], wl[kAttnWarps];
  __shared__ float wacc[kAttnWarps][kMaxD];
  const int64_t t = blockIdx.x, h = blockIdx.y, kh = h / (nh / kvh);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x) qs[i] = F<T>::ld(q + t * ldq + h * d + i);
  __syncthreads();
  const int64_t len = kv_len[t], off = page_off[t];
  float mx = -INFINITY, l = 0.0f, acc[kPer];
#pragma unroll
  for (int j = 0; j < kPer; j++) acc[j] = 0.0f;
  for (int64_t p = warp; p < len; p += kAttnWarps) {
    const int64_t slot = static_cast<int64_t>(pages[off + p / page_size]) * page_size + p % page_size;
    const T* kr = kc + (slot * kvh + kh) * d;
    const T* vr = vc + (slot * kvh + kh) * d;
    float s = 0.0f;
    for (int64_t i = lane; i < d; i += 32) s += qs[i] * F<T>::ld(kr + i);
    s = warp_sum(s) * scale;
    const float nm = fmaxf(mx, s), corr = __expf(mx - nm), e = __expf(s - nm);
    l = l * corr + e;
#pragma unroll
    for (int j = 0; j < kPer; j++) {
      const int64_t i = lane + 32 * j;
      if (i < d) acc[j] = acc[j] * corr + e * F<T>::ld(vr + i);
    }
    mx = nm;
  }
  if (lane == 0) {
    wm[warp] = mx;
    wl[warp] = l;
  }
#pragma unroll
  for (int j = 0; j < kPer; j++) {
    const int64_t i = lane + 32 * j;
    if (i < d) wacc[warp][i] = acc[j];
  }
  __syncthreads();
  float gm = -INFINITY;
  for (int w = 0; w < kAttnWarps; w++) gm = fmaxf(gm, wm[w]);
  float gl = 0.0f;
  for (int w = 0; w < kAttnWarps; w++) gl += wm[w] == -INFINITY ? 0.0f : wl[w] * __expf(wm[w] - gm);
  const float inv = gl > 0.0f ? 1.0f / gl : 0.0f;
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x) {
    float o = 0.0f;
    for (int w = 0; w < kAttnWarps; w++)
      if (wm[w] != -INFINITY) o += wacc[w][i] * __expf(wm[w] - gm);
    F<T>::st(out + t * nh * d + h * d + i, o * inv);
  }
}

}  // namespace

cudaError_t rms_norm(const void* x, void* residual, const void* w, void* out, int64_t m, int64_t h, float eps,
                     int32_t dt, cudaStream_t s) {
  if (m == 0 || h == 0) return cudaSuccess;
  if (m > 2147483647) return cudaErrorInvalidValue;
  return with_float_type(dt, [&](auto t) {
    using T = decltype(t);
    rms_norm_k<T><<<static_cast<unsigned>(m), kNormThreads, 0, s>>>(
        static_cast<const T*>(x), static_cast<T*>(residual), static_cast<const T*>(w), static_cast<T*>(out), h, eps);
    return cudaGetLastError();
  });
}

cudaError_t head_rms_norm(void* x, int64_t m, int64_t n, int64_t d, int64_t ld, const void* w, float eps, int32_t dt,
                          cudaStream_t s) {
  if (m * n == 0 || d == 0) return cudaSuccess;
  return with_float_type(dt, [&](auto t) {
    using T = decltype(t);
    const int64_t threads = m * n * 32;
    head_rms_norm_k<T><<<static_cast<unsigned>((threads + 255) / 256), 256, 0, s>>>(static_cast<T*>(x), m, n, d, ld,
                                                                                    static_cast<const T*>(w), eps);
    return cudaGetLastError();
  });
}

cudaError_t rope(void* x, int64_t m, int64_t n, int64_t d, int64_t ld, const int32_t* pos, const float* inv_freq,
                 int32_t dt, cudaStream_t s) {
  if (m == 0 || n == 0 || d < 2) return cudaSuccess;
  return with_float_type(dt, [&](auto t) {
    using T = decltype(t);
    const int64_t threads = m * (d / 2);
    rope_k<T><<<static_cast<unsigned>((threads + 255) / 256), 256, 0, s>>>(static_cast<T*>(x), m, n, d, ld, pos,
                                                                           inv_freq);
    return cudaGetLastError();
  });
}

cudaError_t kv_write(const void* k, const void* v, int64_t ld, int64_t m, int64_t kvh, int64_t d, const int32_t* slot,
                     void* k_cache, void* v_cache, int32_t elem_bytes, cudaStream_t s) {
  if (m == 0 || kvh * d == 0) return cudaSuccess;
  if (elem_bytes % 2 != 0) return cudaErrorInvalidValue;
  const int64_t u = elem_bytes / 2, row = kvh * d * u;
  kv_write_k<<<grid_for(m * row, 256), 256, 0, s>>>(static_cast<const uint16_t*>(k), static_cast<const uint16_t*>(v),
                                                    ld * u, m, row, slot, static_cast<uint16_t*>(k_cache),
                                                    static_cast<uint16_t*>(v_cache));
  return cudaGetLastError();
}

cudaError_t attention(const void* q, int64_t ldq, int64_t m, int64_t nh, int64_t kvh, int64_t d, const void* k_cache,
                      const void* v_cache, int64_t page_size, const int32_t* kv_len, const int32_t* page_off,
                      const int32_t* pages, float scale, void* out, int32_t dt, cudaStream_t s) {
  if (m == 0 || nh == 0) return cudaSuccess;
  if (d > kMaxD || kvh <= 0 || nh % kvh != 0 || m > 2147483647 || nh > 65535) return cudaErrorInvalidValue;
  return with_float_type(dt, [&](auto t) {
    using T = decltype(t);
    attention_k<T><<<dim3(static_cast<unsigned>(m), static_cast<unsigned>(nh)), kAttnWarps * 32, 0, s>>>(
        static_cast<const T*>(q), ldq, nh, kvh, d, static_cast<const T*>(k_cache), static_cast<const T*>(v_cache),
        page_size, kv_len, page_off, pages, scale, static_cast<T*>(out));
    return cudaGetLastError();
  });
}

}  // namespace tppp_kernels
