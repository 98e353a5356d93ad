// Backend: the compute seam (DESIGN section 1). Memory, copies and the few
// ops the TP layers need. The CPU implementation (backend/cpu) is the oracle
// every other backend is tested against; registry.cpp picks one per device.
// Shapes are row-major; "x[M,K]" is M rows of K elements. Activations and
// outputs share the layer's dtype (F32, F16, BF16); arithmetic is f32.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>

namespace tppp {

// A weight matrix W[N,K] prepared for the backend's GEMM (the CPU keeps an
// f32 copy: Debian's OpenBLAS has no bf16 GEMM).
class PackedWeight {
 public:
  virtual ~PackedWeight() = default;
  int64_t n = 0, k = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;
  virtual int32_t mem_kind() const = 0;  // TPPP_MEM_*
  virtual void* alloc(size_t bytes) = 0;  // throws OUT_OF_MEMORY
  virtual void free(void* p) noexcept = 0;
  virtual void copy(void* dst, const void* src, size_t bytes, void* stream) = 0;
  // w_host: N*K elements of w_dtype in host memory.
  virtual std::unique_ptr<PackedWeight> pack(const void* w_host, int32_t w_dtype, int64_t n, int64_t k) = 0;
  // y[M, :N] (row stride ldy) = x[M,K] W^T + bias[N] (bias may be NULL).
  // x and bias are in `dtype`; y in y_dtype (F32 keeps partial sums exact
  // until a reduction; else equal to dtype).
  virtual void linear(const void* x, const PackedWeight& w, const void* bias, void* y, int64_t m, int64_t ldy,
                      int32_t dtype, int32_t y_dtype, void* stream) = 0;
  // dst[n] (ddt) = src[n] (sdt), float dtypes.
  virtual void convert(const void* src, int32_t sdt, void* dst, int32_t ddt, size_t n, void* stream) = 0;
  // gu[M, 2I] = [gate | up] -> out[M, I] = silu(gate) * up.
  virtual void silu_mul(const void* gu, void* out, int64_t m, int64_t i, int32_t dtype, void* stream) = 0;
  // y[M,N] (y_dtype) += bias[N] (dtype).
  virtual void add_bias(void* y, const void* bias, int64_t m, int64_t n, int32_t dtype, int32_t y_dtype,
                        void* stream) = 0;
  // out[M,H] = table[ids[m] - row0] for ids in [row0, row0 + rows), else 0.
  virtual void embedding(const void* ids, int32_t id_dtype, int64_t m, const void* table, int64_t row0, int64_t rows,
                         int64_t h, void* out, int32_t dtype, void* stream) = 0;
  // Per row of logits[M,N]: the max over the first valid_n columns and its
  // index (+ index_offset); ties pick the smallest index.
  virtual void argmax_rows(const void* logits, int64_t m, int64_t n, int64_t valid_n, int64_t index_offset,
                           int32_t dtype, float* max_out, int64_t* idx_out, void* stream) = 0;
};

std::unique_ptr<Backend> create_cpu_backend();
// device -1: CPU; a CUDA ordinal: the CUDA backend (NOT_SUPPORTED until built).
std::unique_ptr<Backend> create_backend(int device);

}  // namespace tppp
