// The CPU backend's GEMM driver (see gemm.hpp): packing, blocking, threads.
#include "backend/cpu/gemm.hpp"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "backend/cpu/simd.hpp"
#include "backend/cpu/thread_pool.hpp"
#include "c_api.h"
#include "core/dtype.hpp"
#include "core/error.hpp"

namespace tppp {
namespace cpu {
namespace {

constexpr int64_t kKc = 256;             // k rows per block once M > kWholeK
constexpr int64_t kWholeK = 4 * kMr;     // up to this many rows, no k blocks
constexpr size_t kChunkBytes = 128 << 10;  // panels kept in L2 while x's tiles pass

char* alloc_panels(size_t bytes) {
  void* p = nullptr;
  if (posix_memalign(&p, 64, bytes ? bytes : 64) != 0)
    fail(TPPP_ERR_OUT_OF_MEMORY, "cpu backend: cannot allocate %zu bytes for a packed weight", bytes);
  return static_cast<char*>(p);
}

}  // namespace

PackedMatrix::PackedMatrix(const void* w, int32_t w_dt, int64_t n, int64_t k, int32_t store_dt)
    : n_(n), k_(k), dt_(store_dt), es_(dtype_size(store_dt)), data_(nullptr, std::free) {
  const size_t bytes = static_cast<size_t>(panels() * k * kNr) * es_;
  data_.reset(alloc_panels(bytes));
  std::memset(data_.get(), 0, bytes);  // rows past N stay 0
  const size_t wes = dtype_size(w_dt);
  std::unique_ptr<char[]> conv;
  if (w_dt != store_dt) conv.reset(new char[static_cast<size_t>(k) * es_]);
  for (int64_t r = 0; r < n; r++) {
    const char* src = static_cast<const char*>(w) + static_cast<size_t>(r * k) * wes;
    if (conv) {
      convert_dtype(src, w_dt, conv.get(), store_dt, static_cast<size_t>(k));
      src = conv.get();
    }
    char* dst = data_.get() + static_cast<size_t>((r / kNr) * k * kNr + panel_slot(store_dt, static_cast<int>(r % kNr))) * es_;
    if (es_ == 4) {  // typed copies: a memcpy call per element made packing a tenth of a model's load
      uint32_t v;
      for (int64_t c = 0; c < k; c++) std::memcpy(&v, src + c * 4, 4), std::memcpy(dst + c * kNr * 4, &v, 4);
    } else {
      uint16_t v;
      for (int64_t c = 0; c < k; c++) std::memcpy(&v, src + c * 2, 2), std::memcpy(dst + c * kNr * 2, &v, 2);
    }
  }
}

const char* PackedMatrix::panel(int64_t p, int64_t k0) const {
  return data_.get() + static_cast<size_t>((p * k_ + k0) * kNr) * es_;
}

void gemm(const float* x, int64_t m, int64_t ldx, const PackedMatrix& w, const float* bias, float* y, int64_t ldy,
          const Kernels* ks) {
  const int64_t n = w.n(), k = w.k(), np = w.panels();
  if (m <= 0 || n <= 0) return;
  const Kernels& kr = ks ? *ks : kernels();
  // Decode (a few tiles of rows): the whole K at once, a panel staying in L1/L2 while the tiles pass.
  const int64_t kc = m <= kWholeK ? std::max<int64_t>(k, 1) : kKc;
  // Several tiles of rows over 16-bit weights: widen each block of panels to
  // f32 once (thread-local) and let every tile use that, rather than widen
  // in every tile (the widening competes with the FMAs for the same ports).
  const bool widen = m > kMr && w.dtype() != TPPP_DTYPE_F32;
  const size_t es = widen ? 4 : dtype_size(w.dtype());
  int64_t chunk = std::max<int64_t>(1, static_cast<int64_t>(kChunkBytes / (static_cast<size_t>(kc * kNr) * es)));
  // At least ~16 panels per thread, so a small GEMM does not pay for waking threads it cannot feed.
  const int max_threads = static_cast<int>(std::max<int64_t>(1, np / 16));
  // Decode streams its weights from memory: longer runs of adjacent panels
  // per grab keep the prefetchers' streams going (about 4 grabs a thread).
  if (kc == k && m <= kMr) chunk = std::max(chunk, (np + 4 * pool().size() - 1) / (4 * pool().size()));
  // Threads take chunks of panels as they come free (one atomic add per
  // chunk): no thread waits at the join for a slower or later-woken one.
  std::atomic<int64_t> next{0};
  pool().parallel(
      [&](int, int) {
        thread_local std::vector<float> wide;
        if (widen && wide.size() < static_cast<size_t>(chunk * kc * kNr))
          wide.resize(static_cast<size_t>(chunk * kc * kNr));
        for (int64_t c0 = next.fetch_add(chunk); c0 < np; c0 = next.fetch_add(chunk)) {
          const int64_t c1 = std::min(np, c0 + chunk);
          if (bias)
            for (int64_t r = 0; r < m; r++) {
              const int64_t j0 = c0 * kNr, j1 = std::min(n, c1 * kNr);
              std::memcpy(y + r * ldy + j0, bias + j0, static_cast<size_t>(j1 - j0) * 4);
            }
          for (int64_t k0 = 0; k0 < k || k0 == 0; k0 += kc) {
            const int64_t kb = std::min(kc, k - k0);
            const bool acc = bias != nullptr || k0 > 0;
            if (widen)
              for (int64_t p = c0; p < c1; p++) kr.panel_to_f32(w.panel(p, k0), w.dtype(), wide.data() + (p - c0) * kb * kNr, kb);
            for (int64_t m0 = 0; m0 < m; m0 += kMr) {
              const int mr = static_cast<int>(std::min<int64_t>(kMr, m - m0));
              for (int64_t p = c0; p < c1; p++) {
                const int nc = static_cast<int>(std::min<int64_t>(kNr, n - p * kNr));
                const void* b = widen ? static_cast<const void*>(wide.data() + (p - c0) * kb * kNr) : w.panel(p, k0);
                kr.tile(mr, kb, x + m0 * ldx + k0, ldx, b, widen ? TPPP_DTYPE_F32 : w.dtype(), y + m0 * ldy + p * kNr,
                        ldy, nc, acc);
              }
            }
            if (kb <= 0) break;
          }
        }
      },
      max_threads);
}

}  // namespace cpu
}  // namespace tppp
