// The CPU backend's inner loops, chosen once per process by what the CPU
// has (cpuid feature bits, never model numbers: a CPU newer than this code
// still gets the fastest path it supports): AVX2 + FMA + F16C kernels, or
// portable C++ loops. TPPP_CPU_ISA=generic forces the portable loops (the
// tests run both). Raw pointers and sizes, no allocation, no threads.
#pragma once
#include <cstddef>
#include <cstdint>

#include "c_api.h"

namespace tppp {
namespace cpu {

// Panel width of a packed weight (gemm.hpp): 16 output columns.
constexpr int kNr = 16;
// Most rows one GEMM tile computes.
constexpr int kMr = 6;

// Where column j (0..15) of a panel row sits in memory. BF16 rows are
// stored [c0, c8, c1, c9, ..., c7, c15], so that one 256-bit load read as
// eight 32-bit lanes gives columns 0..7 by a shift (<< 16) and 8..15 by a
// mask (& 0xffff0000): two cheap ops where widening in order takes five.
inline int panel_slot(int32_t dt, int j) {
  return dt == TPPP_DTYPE_BF16 ? (j < 8 ? 2 * j : 2 * (j - 8) + 1) : j;
}

struct Kernels {
  const char* isa;  // "avx2" or "generic"
  // c[mr, nc] (row stride ldc) = (acc ? c : 0) + a[mr, kc] (row stride lda)
  // times the panel b (kc rows of kNr weights of dtype bdt, contiguous);
  // mr in [1, kMr], nc in [1, kNr].
  void (*tile)(int mr, int64_t kc, const float* a, int64_t lda, const void* b, int32_t bdt, float* c, int64_t ldc,
               int nc, bool acc);
  // dst[r, 0..16) = panel rows r < rows (dtype dt, panel_slot order) as f32 in column order.
  void (*panel_to_f32)(const void* src, int32_t dt, float* dst, int64_t rows);
  // Attention's decode products for nq query rows at once against one cached
  // row of dtype dt (read once): s[r * lds] = q[r, :d] . k, and
  // o[r, :d] += p[r * ldp] * v (q and o rows contiguous, d apart).
  void (*dots)(const float* q, int64_t nq, int64_t d, const void* k, int32_t dt, float* s, int64_t lds);
  void (*axpys)(float* o, int64_t nq, int64_t d, const float* p, int64_t ldp, const void* v, int32_t dt);
  // dst[i] = f32(src[i]) for src of dtype F32/F16/BF16 (exact).
  void (*to_f32)(const void* src, int32_t dt, float* dst, int64_t n);
  // dst[i] = src[i] rounded to dtype (nearest even, NaN kept: core/dtype.hpp's rule).
  void (*from_f32)(const float* src, void* dst, int32_t dt, int64_t n);
  // s[i] = exp(s[i] - mx) for s[i] <= mx; returns their sum (a softmax block).
  float (*exp_sum)(float* s, int64_t n, float mx);
  // out[i] = silu(g[i]) * u[i], f32
  void (*silu_mul)(const float* g, const float* u, float* out, int64_t n);
};

// The process's kernels (resolved at first use).
const Kernels& kernels();
// The portable ones and the AVX2 ones (NULL where the CPU lacks them), for
// tests that compare the two.
const Kernels& generic_kernels();
const Kernels* avx2_kernels();

}  // namespace cpu
}  // namespace tppp
