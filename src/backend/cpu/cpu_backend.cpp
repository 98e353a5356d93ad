// CPU backend: our GEMM on weights packed once in their own dtype (gemm.hpp
// says why not OpenBLAS), attention and the row ops on one thread pool;
// f16/bf16 activations widened to f32 per call, rounded once on the way out.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <vector>

#include "backend/backend.hpp"
#include "backend/cpu/decoder_ops.hpp"
#include "backend/cpu/gemm.hpp"
#include "backend/cpu/simd.hpp"
#include "backend/cpu/thread_pool.hpp"
#include "c_api.h"
#include "core/dtype.hpp"
#include "core/error.hpp"

namespace tppp {
namespace {

class CpuWeight final : public PackedWeight {
 public:
  explicit CpuWeight(cpu::PackedMatrix&& m) : w(std::move(m)) {}
  cpu::PackedMatrix w;
};

// Per-thread scratch, kept between calls: no allocation on the forward path
// once the largest batch has run.
float* scratch(std::vector<float>& v, size_t n) {
  if (v.size() < n) v.resize(n);
  return v.data();
}

class CpuBackend final : public Backend {
 public:
  const char* name() const override { return "cpu"; }
  int32_t mem_kind() const override { return TPPP_MEM_HOST; }
  void* alloc(size_t bytes) override {
    void* p = nullptr;
    if (posix_memalign(&p, 64, bytes ? bytes : 64) != 0)
      fail(TPPP_ERR_OUT_OF_MEMORY, "cpu backend: cannot allocate %zu bytes", bytes);
    return p;
  }
  void free(void* p) noexcept override { std::free(p); }
  void copy(void* dst, const void* src, size_t bytes, void*) override { std::memmove(dst, src, bytes); }
  void copy2d(void* dst, size_t dpitch, const void* src, size_t spitch, size_t width, size_t rows,
              void*) override {
    for (size_t r = 0; r < rows; r++)
      std::memcpy(static_cast<char*>(dst) + r * dpitch, static_cast<const char*>(src) + r * spitch, width);
  }
  void sync(void*) override {}

  // Weights keep the checkpoint's dtype under f32 compute (widening is
  // exact, in registers); under f16/bf16 compute they are rounded to it once,
  // as transformers' torch_dtype and the CUDA backend do.
  std::unique_ptr<PackedWeight> pack(const void* w, int32_t dt, int64_t n, int64_t k, int32_t compute) override {
    const int32_t store = compute == TPPP_DTYPE_F32 ? dt : compute;
    std::unique_ptr<CpuWeight> p(new CpuWeight(cpu::PackedMatrix(w, dt, n, k, store)));
    p->n = n;
    p->k = k;
    return p;
  }

  void convert(const void* src, int32_t sdt, void* dst, int32_t ddt, size_t n, void*) override {
    convert_dtype(src, sdt, dst, ddt, n);
  }

  void linear(const void* x, const PackedWeight& pw, const void* bias, void* y, int64_t m, int64_t ldy, int32_t dt,
              int32_t ydt, void*) override {
    const cpu::PackedMatrix& w = static_cast<const CpuWeight&>(pw).w;
    const int64_t n = w.n(), k = w.k();
    if (m == 0 || n == 0) return;
    const cpu::Kernels& kr = cpu::kernels();
    thread_local std::vector<float> xs, ys, bs;
    const float* xf = static_cast<const float*>(x);
    if (dt != TPPP_DTYPE_F32) {
      float* t = scratch(xs, static_cast<size_t>(m * k));
      kr.to_f32(x, dt, t, m * k);
      xf = t;
    }
    const float* bf = static_cast<const float*>(bias);
    if (bias && dt != TPPP_DTYPE_F32) {
      float* t = scratch(bs, static_cast<size_t>(n));
      kr.to_f32(bias, dt, t, n);
      bf = t;
    }
    if (ydt == TPPP_DTYPE_F32) {
      cpu::gemm(xf, m, k, w, bf, static_cast<float*>(y), ldy);
      return;
    }
    float* yf = scratch(ys, static_cast<size_t>(m * n));  // f32, rounded once below
    cpu::gemm(xf, m, k, w, bf, yf, n);
    const size_t es = dtype_size(ydt);
    for (int64_t r = 0; r < m; r++) kr.from_f32(yf + r * n, static_cast<char*>(y) + static_cast<size_t>(r * ldy) * es, ydt, n);
  }

  void silu_mul(const void* gu, void* out, int64_t m, int64_t i, int32_t dt, void*) override {
    const cpu::Kernels& kr = cpu::kernels();
    const size_t es = dtype_size(dt);
    const int64_t rows_per = std::max<int64_t>(1, 32768 / std::max<int64_t>(1, i));  // ~32K elements a thread at least
    cpu::pool().parallel(
        [&](int tid, int nt) {
          thread_local std::vector<float> g, u;
          float* gf = scratch(g, static_cast<size_t>(i));
          float* uf = scratch(u, static_cast<size_t>(i));
          for (int64_t r = m * tid / nt; r < m * (tid + 1) / nt; r++) {
            const char* row = static_cast<const char*>(gu) + static_cast<size_t>(r * 2 * i) * es;
            kr.to_f32(row, dt, gf, i);
            kr.to_f32(row + static_cast<size_t>(i) * es, dt, uf, i);
            kr.silu_mul(gf, uf, gf, i);
            kr.from_f32(gf, static_cast<char*>(out) + static_cast<size_t>(r * i) * es, dt, i);
          }
        },
        static_cast<int>(std::max<int64_t>(1, m / rows_per)));
  }

  void add_bias(void* y, const void* bias, int64_t m, int64_t n, int32_t dt, int32_t ydt, void*) override {
    for (int64_t r = 0; r < m; r++)
      for (int64_t c = 0; c < n; c++) {
        size_t at = static_cast<size_t>(r * n + c);
        store_float(ydt, y, at, load_float(ydt, y, at) + load_float(dt, bias, static_cast<size_t>(c)));
      }
  }

  void embedding(const void* ids, int32_t id_dtype, int64_t m, const void* table, int64_t row0, int64_t rows,
                 int64_t h, void* out, int32_t dt, void*) override {
    const size_t row_bytes = static_cast<size_t>(h) * dtype_size(dt);
    for (int64_t r = 0; r < m; r++) {
      int64_t id = id_dtype == TPPP_DTYPE_I64 ? static_cast<const int64_t*>(ids)[r]
                                              : static_cast<const int32_t*>(ids)[r];
      char* dst = static_cast<char*>(out) + static_cast<size_t>(r) * row_bytes;
      if (id >= row0 && id < row0 + rows)
        std::memcpy(dst, static_cast<const char*>(table) + static_cast<size_t>(id - row0) * row_bytes, row_bytes);
      else
        std::memset(dst, 0, row_bytes);  // another rank's row (or out of range): 0, then all-reduce
    }
  }

  void argmax_rows(const void* logits, int64_t m, int64_t n, int64_t valid_n, int64_t off, int32_t dt,
                   ArgmaxCand* out, void*) override {
    for (int64_t r = 0; r < m; r++) {
      float best = -std::numeric_limits<float>::infinity();
      int64_t at = -1;
      for (int64_t c = 0; c < valid_n; c++) {
        float v = load_float(dt, logits, static_cast<size_t>(r * n + c));
        if (at < 0 || argmax_better(v, c, best, at)) {
          best = v;
          at = c;
        }
      }
      out[r] = ArgmaxCand{best, 0, at < 0 ? std::numeric_limits<int64_t>::max() : at + off};
    }
  }

  void rms_norm(const void* x, void* residual, const void* w, void* out, int64_t m, int64_t h, float eps, int32_t dt,
                void*) override {
    cpu::rms_norm(x, residual, w, out, m, h, eps, dt);
  }
  void head_rms_norm(void* x, int64_t m, int64_t n, int64_t d, int64_t ld, const void* w, float eps, int32_t dt,
                     void*) override {
    cpu::head_rms_norm(x, m, n, d, ld, w, eps, dt);
  }
  void rope(void* x, int64_t m, int64_t n, int64_t d, int64_t ld, const int32_t* pos, const float* inv_freq,
            int32_t dt, void*) override {
    cpu::rope(x, m, n, d, ld, pos, inv_freq, dt);
  }
  void kv_write(const void* k, const void* v, int64_t ld, int64_t m, int64_t kvh, int64_t d, const int32_t* slot,
                void* kc, void* vc, int32_t dt, void*) override {
    cpu::kv_write(k, v, ld, m, kvh, d, slot, kc, vc, dt);
  }
  void attention(const void* q, int64_t ldq, int64_t m, int64_t nh, int64_t kvh, int64_t d, const void* kc,
                 const void* vc, int64_t page_size, const int32_t* kv_len, const int32_t* page_off,
                 const int32_t* pages, float scale, void* out, int32_t dt, void*) override {
    cpu::attention(q, ldq, m, nh, kvh, d, kc, vc, page_size, kv_len, page_off, pages, scale, out, dt);
  }

  void argmax_merge(const ArgmaxCand* cand, int parts, int64_t m, int64_t* ids, void*) override {
    const int64_t none = std::numeric_limits<int64_t>::max();
    for (int64_t r = 0; r < m; r++) {
      ArgmaxCand b = cand[r];
      for (int t = 1; t < parts; t++) {
        const ArgmaxCand& o = cand[t * m + r];
        if (o.index != none && (b.index == none || argmax_better(o.value, o.index, b.value, b.index))) b = o;
      }
      ids[r] = b.index;
    }
  }
};

}  // namespace

std::unique_ptr<Backend> create_cpu_backend() { return std::unique_ptr<Backend>(new CpuBackend()); }

}  // namespace tppp
