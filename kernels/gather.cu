// Vocab-parallel embedding gather (range mask: rows of other shards are 0)
// and the per-row (max, index) candidates of the distributed greedy argmax.
#include <math.h>

#include "dtype.cuh"
#include "tppp_kernels.h"

namespace tppp_kernels {
namespace {

__global__ void embedding_k(const void* ids, bool i64, int64_t m, const char* table, int64_t row0, int64_t rows,
                            int64_t row_bytes, char* out, bool vec16) {
  for (int64_t r = blockIdx.x; r < m; r += gridDim.x) {
    const int64_t id = i64 ? static_cast<const int64_t*>(ids)[r] : static_cast<const int32_t*>(ids)[r];
    const bool mine = id >= row0 && id < row0 + rows;
    const char* src = table + (mine ? (id - row0) * row_bytes : 0);
    char* dst = out + r * row_bytes;
    if (vec16) {
      const int64_t n = row_bytes / 16;
      for (int64_t j = threadIdx.x; j < n; j += blockDim.x)
        reinterpret_cast<uint4*>(dst)[j] = mine ? reinterpret_cast<const uint4*>(src)[j] : make_uint4(0, 0, 0, 0);
    } else {
      for (int64_t j = threadIdx.x; j < row_bytes; j += blockDim.x) dst[j] = mine ? src[j] : 0;
    }
  }
}

// a beats b: larger value; equal values: smaller index; a number beats NaN.
__device__ __forceinline__ bool better(float av, int64_t ai, float bv, int64_t bi) {
  if (isnan(bv)) return !isnan(av) || ai < bi;
  if (isnan(av)) return false;
  return av > bv || (av == bv && ai < bi);
}

constexpr int kArgThreads = 256;

template <typename T>
__global__ void argmax_rows_k(const T* logits, int64_t m, int64_t n, int64_t valid_n, int64_t off, ArgmaxCand* out) {
  __shared__ float sv[kArgThreads];
  __shared__ int64_t si[kArgThreads];
  for (int64_t r = blockIdx.x; r < m; r += gridDim.x) {
    float bv = -INFINITY;
    int64_t bi = INT64_MAX;
    for (int64_t c = threadIdx.x; c < valid_n; c += blockDim.x) {
      const float v = F<T>::ld(logits + r * n + c);
      if (bi == INT64_MAX || better(v, c, bv, bi)) {
        bv = v;
        bi = c;
      }
    }
    sv[threadIdx.x] = bv;
    si[threadIdx.x] = bi;
    __syncthreads();
    for (int w = blockDim.x / 2; w > 0; w /= 2) {
      if (threadIdx.x < w) {
        const int o = threadIdx.x + w;
        if (si[o] != INT64_MAX && (si[threadIdx.x] == INT64_MAX || better(sv[o], si[o], sv[threadIdx.x], si[threadIdx.x]))) {
          sv[threadIdx.x] = sv[o];
          si[threadIdx.x] = si[o];
        }
      }
      __syncthreads();
    }
    if (threadIdx.x == 0) {
      out[r].value = sv[0];
      out[r].pad = 0;
      out[r].index = si[0] == INT64_MAX ? INT64_MAX : si[0] + off;
    }
    __syncthreads();
  }
}

__global__ void argmax_merge_k(const ArgmaxCand* cand, int parts, int64_t m, int64_t* ids) {
  for (int64_t r = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; r < m; r += int64_t(gridDim.x) * blockDim.x) {
    ArgmaxCand b = cand[r];
    for (int t = 1; t < parts; t++) {
      const ArgmaxCand o = cand[t * m + r];
      if (o.index != INT64_MAX && (b.index == INT64_MAX || better(o.value, o.index, b.value, b.index))) b = o;
    }
    ids[r] = b.index;
  }
}

}  // namespace

cudaError_t embedding(const void* ids, int32_t id_dtype, int64_t m, const void* table, int64_t row0, int64_t rows,
                      int64_t h, void* out, int32_t elem_bytes, cudaStream_t s) {
  if (m == 0 || h == 0) return cudaSuccess;
  if (id_dtype != TPPP_DTYPE_I32 && id_dtype != TPPP_DTYPE_I64) return cudaErrorInvalidValue;
  const int64_t row_bytes = h * elem_bytes;
  const bool vec16 = row_bytes % 16 == 0 && reinterpret_cast<uintptr_t>(table) % 16 == 0 &&
                     reinterpret_cast<uintptr_t>(out) % 16 == 0;
  const unsigned blocks = static_cast<unsigned>(m < 65536 ? m : 65536);
  embedding_k<<<blocks, 128, 0, s>>>(ids, id_dtype == TPPP_DTYPE_I64, m, static_cast<const char*>(table), row0, rows,
                                     row_bytes, static_cast<char*>(out), vec16);
  return cudaGetLastError();
}

cudaError_t argmax_rows(const void* logits, int64_t m, int64_t n, int64_t valid_n, int64_t off, int32_t dt,
                        ArgmaxCand* out, cudaStream_t s) {
  if (m == 0) return cudaSuccess;
  return with_float_type(dt, [&](auto t) {
    using T = decltype(t);
    const unsigned blocks = static_cast<unsigned>(m < 65536 ? m : 65536);
    argmax_rows_k<T><<<blocks, kArgThreads, 0, s>>>(static_cast<const T*>(logits), m, n, valid_n, off, out);
    return cudaGetLastError();
  });
}

cudaError_t argmax_merge(const ArgmaxCand* cand, int parts, int64_t m, int64_t* ids, cudaStream_t s) {
  if (m == 0) return cudaSuccess;
  argmax_merge_k<<<grid_for(m, 128), 128, 0, s>>>(cand, parts, m, ids);
  return cudaGetLastError();
}

}  // namespace tppp_kernels
