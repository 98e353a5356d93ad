// Framework-free CUDA kernels of libtppp (the elementwise and reduction ops
// around the GEMMs of a TP layer). Each launcher takes raw device pointers,
// sizes and a stream, returns the launch's cudaError_t and never allocates,
// so it can be captured in a CUDA graph and called from any host code.
// dtype arguments are TPPP_DTYPE_F32 / _F16 / _BF16 (c_api.h); ids are I32/I64.
// Shapes are row-major.
#pragma once
#include <cuda_runtime_api.h>
#include <stdint.h>

namespace tppp_kernels {

// One row's candidate for the distributed greedy argmax (16 bytes, the same
// layout on the host, the device and the wire).
struct ArgmaxCand {
  float value;
  int32_t pad;
  int64_t index;
};

// out[M, I] = silu(gu[M, 0:I]) * gu[M, I:2I]   (f32 arithmetic)
cudaError_t silu_mul(const void* gu, void* out, int64_t m, int64_t i, int32_t dtype, cudaStream_t s);

// y[M, N] (y_dtype) += bias[N] (b_dtype)
cudaError_t add_bias(void* y, int32_t y_dtype, const void* bias, int32_t b_dtype, int64_t m, int64_t n,
                     cudaStream_t s);

// dst[n] (ddt) = src[n] (sdt); float dtypes; src == dst allowed when the sizes match.
cudaError_t convert(const void* src, int32_t sdt, void* dst, int32_t ddt, int64_t n, cudaStream_t s);

// out[M, H] = table[ids[m] - row0, :] when row0 <= ids[m] < row0 + rows, else 0
// (the rows of other vocab shards; out-of-vocab ids give zero rows).
cudaError_t embedding(const void* ids, int32_t id_dtype, int64_t m, const void* table, int64_t row0, int64_t rows,
                      int64_t h, void* out, int32_t elem_bytes, cudaStream_t s);

// Per row of logits[M, N] (row stride N): max over columns [0, valid_n) and
// its column + index_offset; ties pick the smallest index; NaN is never
// picked over a number. valid_n == 0 gives value -inf, index INT64_MAX.
cudaError_t argmax_rows(const void* logits, int64_t m, int64_t n, int64_t valid_n, int64_t index_offset,
                        int32_t dtype, ArgmaxCand* out, cudaStream_t s);

// ids[r] = index of the best of cand[t * M + r] over t in [0, parts), same tie rule.
cudaError_t argmax_merge(const ArgmaxCand* cand, int parts, int64_t m, int64_t* ids, cudaStream_t s);

// ---- decoder ops (kernels/decoder.cu); semantics of backend/backend.hpp's
// Backend methods of the same names, f32 arithmetic, index arrays device I32.
cudaError_t rms_norm(const void* x, void* residual, const void* w, void* out, int64_t m, int64_t h, float eps,
                     int32_t dtype, cudaStream_t s);
cudaError_t head_rms_norm(void* x, int64_t m, int64_t n, int64_t d, int64_t ld, const void* w, float eps,
                          int32_t dtype, cudaStream_t s);
cudaError_t rope(void* x, int64_t m, int64_t n, int64_t d, int64_t ld, const int32_t* pos, const float* inv_freq,
                 int32_t dtype, cudaStream_t s);
cudaError_t kv_write(const void* k, const void* v, int64_t ld, int64_t m, int64_t kvh, int64_t d, const int32_t* slot,
                     void* k_cache, void* v_cache, int32_t elem_bytes, cudaStream_t s);
// Generic paged attention: any float dtype, head_dim <= 256, nh % kvh == 0.
cudaError_t attention(const void* q, int64_t ldq, int64_t m, int64_t nh, int64_t kvh, int64_t d, const void* k_cache,
                      const void* v_cache, int64_t page_size, const int32_t* kv_len, const int32_t* page_off,
                      const int32_t* pages, float scale, void* out, int32_t dtype, cudaStream_t s);

}  // namespace tppp_kernels
