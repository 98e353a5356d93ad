// The CPU backend's GEMM, y[M,N] = x[M,K] W[N,K]^T (+ bias), on weights
// packed once at bind time: panels of 16 rows of W, k-major inside a panel
// ([N/16][K][16]), in the weight's own dtype (F32, BF16 or F16: a bf16
// checkpoint stays its own size; the kernels widen 16 weights at a time in
// registers). Why not OpenBLAS: its sgemm packs W again on every call (62%
// of a decode step went to sgemm_incopy), Debian's build picks generic SSE3
// kernels on CPUs newer than it (Prescott on a Xeon with AVX-512), it has
// no bf16 GEMM on CPUs without AVX512-BF16, and its threads spin beside
// ours. Decode (M <= 6) streams each panel once, the whole K in registers;
// larger M blocks K by 256 and keeps a chunk of panels in L2 (16-bit
// weights widened to f32 there, once per chunk) while 6-row tiles of x
// pass over it (Goto's loop order). Threads take chunks of panels as they
// come free.
#pragma once
#include <cstdint>
#include <memory>

namespace tppp {
namespace cpu {

class PackedMatrix {
 public:
  // w[n, k] of dtype w_dt (host memory) into panels of dtype store_dt
  // (F32/F16/BF16; converted when they differ, rounding to nearest even).
  PackedMatrix(const void* w, int32_t w_dt, int64_t n, int64_t k, int32_t store_dt);
  int64_t n() const { return n_; }
  int64_t k() const { return k_; }
  int32_t dtype() const { return dt_; }
  int64_t panels() const { return (n_ + 15) / 16; }
  // Panel p from row k0: kNr weights per k, contiguous.
  const char* panel(int64_t p, int64_t k0) const;

 private:
  int64_t n_, k_;
  int32_t dt_;
  size_t es_;
  std::unique_ptr<char, void (*)(void*)> data_;
};

// y[m, :N] (row stride ldy) = x[m, K] (row stride ldx) W^T, plus bias[N]
// (f32, may be NULL) when given; f32 throughout, on the backend's pool;
// kernels: the process's (NULL) or a given set (tests).
struct Kernels;
void gemm(const float* x, int64_t m, int64_t ldx, const PackedMatrix& w, const float* bias, float* y, int64_t ldy,
          const Kernels* kernels = nullptr);

}  // namespace cpu
}  // namespace tppp
