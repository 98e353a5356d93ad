// The CPU backend's inner loops (see simd.hpp). The AVX2 versions carry
// their own target attribute, so the library still builds for (and runs on)
// any x86-64; they are called only when cpuid says AVX2, FMA and F16C.
#include "backend/cpu/simd.hpp"

#include <cmath>
#include <cstring>
#include <string>

#include "c_api.h"
#include "core/dtype.hpp"
#include "core/env.hpp"
#include "core/error.hpp"

#if defined(__x86_64__)
#include <immintrin.h>
#define TPPP_AVX2 __attribute__((target("avx2,fma,f16c")))
#endif

namespace tppp {
namespace cpu {
namespace {

// ---------------------------------------------------------------- generic

template <int MR>
void tile_generic_mr(int64_t kc, const float* a, int64_t lda, const void* b, int32_t bdt, float* c, int64_t ldc,
                     int nc, bool acc) {
  float t[MR][kNr] = {};
  float w[kNr];
  for (int64_t k = 0; k < kc; k++) {
    for (int j = 0; j < kNr; j++) w[j] = load_float(bdt, b, static_cast<size_t>(k * kNr + panel_slot(bdt, j)));
    for (int i = 0; i < MR; i++) {
      const float ai = a[i * lda + k];
      for (int j = 0; j < kNr; j++) t[i][j] += ai * w[j];
    }
  }
  for (int i = 0; i < MR; i++)
    for (int j = 0; j < nc; j++) c[i * ldc + j] = (acc ? c[i * ldc + j] : 0.0f) + t[i][j];
}

void tile_generic(int mr, int64_t kc, const float* a, int64_t lda, const void* b, int32_t bdt, float* c, int64_t ldc,
                  int nc, bool acc) {
  switch (mr) {
    case 1: return tile_generic_mr<1>(kc, a, lda, b, bdt, c, ldc, nc, acc);
    case 2: return tile_generic_mr<2>(kc, a, lda, b, bdt, c, ldc, nc, acc);
    case 3: return tile_generic_mr<3>(kc, a, lda, b, bdt, c, ldc, nc, acc);
    case 4: return tile_generic_mr<4>(kc, a, lda, b, bdt, c, ldc, nc, acc);
    case 5: return tile_generic_mr<5>(kc, a, lda, b, bdt, c, ldc, nc, acc);
    default: return tile_generic_mr<6>(kc, a, lda, b, bdt, c, ldc, nc, acc);
  }
}

void panel_to_f32_generic(const void* src, int32_t dt, float* dst, int64_t rows) {
  for (int64_t r = 0; r < rows; r++)
    for (int j = 0; j < kNr; j++) dst[r * kNr + j] = load_float(dt, src, static_cast<size_t>(r * kNr + panel_slot(dt, j)));
}

float dot_generic(const float* a, const void* b, int32_t bdt, int64_t n) {
  float s = 0;
  for (int64_t i = 0; i < n; i++) s += a[i] * load_float(bdt, b, static_cast<size_t>(i));
  return s;
}

void axpy_generic(float* y, float p, const void* x, int32_t xdt, int64_t n) {
  for (int64_t i = 0; i < n; i++) y[i] += p * load_float(xdt, x, static_cast<size_t>(i));
}

void dots_generic(const float* q, int64_t nq, int64_t d, const void* k, int32_t dt, float* s, int64_t lds) {
  for (int64_t r = 0; r < nq; r++) s[r * lds] = dot_generic(q + r * d, k, dt, d);
}

void axpys_generic(float* o, int64_t nq, int64_t d, const float* p, int64_t ldp, const void* v, int32_t dt) {
  for (int64_t r = 0; r < nq; r++) axpy_generic(o + r * d, p[r * ldp], v, dt, d);
}

void to_f32_generic(const void* src, int32_t dt, float* dst, int64_t n) {
  convert_dtype(src, dt, dst, TPPP_DTYPE_F32, static_cast<size_t>(n));
}

void from_f32_generic(const float* src, void* dst, int32_t dt, int64_t n) {
  convert_dtype(src, TPPP_DTYPE_F32, dst, dt, static_cast<size_t>(n));
}

float exp_sum_generic(float* s, int64_t n, float mx) {
  float sum = 0;
  for (int64_t i = 0; i < n; i++) sum += (s[i] = std::exp(s[i] - mx));
  return sum;
}

void silu_mul_generic(const float* g, const float* u, float* out, int64_t n) {
  for (int64_t i = 0; i < n; i++) out[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
}

const Kernels kGeneric = {"generic",      tile_generic,     panel_to_f32_generic, dots_generic,   axpys_generic,
                          to_f32_generic, from_f32_generic, exp_sum_generic,      silu_mul_generic};

#if defined(__x86_64__)
// ------------------------------------------------------------------- AVX2

// 16 weights of dtype DT at p, as two vectors of 8 f32 (exact).
template <int32_t DT>
TPPP_AVX2 inline void load16(const char* p, __m256& lo, __m256& hi) {
  if (DT == TPPP_DTYPE_F32) {
    lo = _mm256_loadu_ps(reinterpret_cast<const float*>(p));
    hi = _mm256_loadu_ps(reinterpret_cast<const float*>(p) + 8);
  } else if (DT == TPPP_DTYPE_BF16) {  // panel_slot order: even u16 = columns 0..7, odd = 8..15
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    lo = _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
    hi = _mm256_castsi256_ps(_mm256_and_si256(v, _mm256_set1_epi32(static_cast<int>(0xffff0000u))));
  } else {
    lo = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    hi = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p) + 1));
  }
}

template <int MR, int32_t DT>
TPPP_AVX2 void tile_avx2_mr(int64_t kc, const float* a, int64_t lda, const char* b, float* c, int64_t ldc, int nc,
                            bool acc) {
  constexpr size_t row = kNr * (DT == TPPP_DTYPE_F32 ? 4 : 2);
  __m256 c0[MR], c1[MR];
#pragma GCC unroll 6
  for (int i = 0; i < MR; i++) c0[i] = c1[i] = _mm256_setzero_ps();
  if (MR == 1) {  // one row: two k at a time, so four FMA chains hide the FMA latency
    __m256 d0 = _mm256_setzero_ps(), d1 = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k + 2 <= kc; k += 2) {
      // 16-bit panels: two k are one line; ask for the one 1 KiB ahead (a
      // decode GEMV streams from memory; measured +10-15% for bf16, while
      // f32, two lines per two k, was slower with it).
      if (DT != TPPP_DTYPE_F32) _mm_prefetch(b + static_cast<size_t>(k) * row + 1024, _MM_HINT_T0);
      __m256 lo, hi, lo2, hi2;
      load16<DT>(b + static_cast<size_t>(k) * row, lo, hi);
      load16<DT>(b + static_cast<size_t>(k + 1) * row, lo2, hi2);
      const __m256 x0 = _mm256_broadcast_ss(a + k), x1 = _mm256_broadcast_ss(a + k + 1);
      c0[0] = _mm256_fmadd_ps(x0, lo, c0[0]);
      c1[0] = _mm256_fmadd_ps(x0, hi, c1[0]);
      d0 = _mm256_fmadd_ps(x1, lo2, d0);
      d1 = _mm256_fmadd_ps(x1, hi2, d1);
    }
    for (; k < kc; k++) {
      __m256 lo, hi;
      load16<DT>(b + static_cast<size_t>(k) * row, lo, hi);
      const __m256 x0 = _mm256_broadcast_ss(a + k);
      c0[0] = _mm256_fmadd_ps(x0, lo, c0[0]);
      c1[0] = _mm256_fmadd_ps(x0, hi, c1[0]);
    }
    c0[0] = _mm256_add_ps(c0[0], d0);
    c1[0] = _mm256_add_ps(c1[0], d1);
  } else {
    for (int64_t k = 0; k < kc; k++) {
      __m256 lo, hi;
      load16<DT>(b + static_cast<size_t>(k) * row, lo, hi);
#pragma GCC unroll 6
      for (int i = 0; i < MR; i++) {
        const __m256 x = _mm256_broadcast_ss(a + i * lda + k);
        c0[i] = _mm256_fmadd_ps(x, lo, c0[i]);
        c1[i] = _mm256_fmadd_ps(x, hi, c1[i]);
      }
    }
  }
#pragma GCC unroll 6
  for (int i = 0; i < MR; i++) {
    float* ci = c + i * ldc;
    if (nc == kNr) {
      if (acc) {
        c0[i] = _mm256_add_ps(c0[i], _mm256_loadu_ps(ci));
        c1[i] = _mm256_add_ps(c1[i], _mm256_loadu_ps(ci + 8));
      }
      _mm256_storeu_ps(ci, c0[i]);
      _mm256_storeu_ps(ci + 8, c1[i]);
    } else {
      alignas(32) float t[kNr];
      _mm256_store_ps(t, c0[i]);
      _mm256_store_ps(t + 8, c1[i]);
      for (int j = 0; j < nc; j++) ci[j] = (acc ? ci[j] : 0.0f) + t[j];
    }
  }
}

template <int32_t DT>
TPPP_AVX2 void tile_avx2_dt(int mr, int64_t kc, const float* a, int64_t lda, const char* b, float* c, int64_t ldc,
                            int nc, bool acc) {
  switch (mr) {
    case 1: return tile_avx2_mr<1, DT>(kc, a, lda, b, c, ldc, nc, acc);
    case 2: return tile_avx2_mr<2, DT>(kc, a, lda, b, c, ldc, nc, acc);
    case 3: return tile_avx2_mr<3, DT>(kc, a, lda, b, c, ldc, nc, acc);
    case 4: return tile_avx2_mr<4, DT>(kc, a, lda, b, c, ldc, nc, acc);
    case 5: return tile_avx2_mr<5, DT>(kc, a, lda, b, c, ldc, nc, acc);
    default: return tile_avx2_mr<6, DT>(kc, a, lda, b, c, ldc, nc, acc);
  }
}

TPPP_AVX2 void tile_avx2(int mr, int64_t kc, const float* a, int64_t lda, const void* b, int32_t bdt, float* c,
                         int64_t ldc, int nc, bool acc) {
  const char* bp = static_cast<const char*>(b);
  if (bdt == TPPP_DTYPE_F32) return tile_avx2_dt<TPPP_DTYPE_F32>(mr, kc, a, lda, bp, c, ldc, nc, acc);
  if (bdt == TPPP_DTYPE_BF16) return tile_avx2_dt<TPPP_DTYPE_BF16>(mr, kc, a, lda, bp, c, ldc, nc, acc);
  return tile_avx2_dt<TPPP_DTYPE_F16>(mr, kc, a, lda, bp, c, ldc, nc, acc);
}

TPPP_AVX2 inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

TPPP_AVX2 void panel_to_f32_avx2(const void* src, int32_t dt, float* dst, int64_t rows) {
  const char* p = static_cast<const char*>(src);
  const size_t row = kNr * (dt == TPPP_DTYPE_F32 ? 4 : 2);
  for (int64_t r = 0; r < rows; r++) {
    __m256 lo, hi;
    if (dt == TPPP_DTYPE_F32)
      load16<TPPP_DTYPE_F32>(p + static_cast<size_t>(r) * row, lo, hi);
    else if (dt == TPPP_DTYPE_BF16)
      load16<TPPP_DTYPE_BF16>(p + static_cast<size_t>(r) * row, lo, hi);
    else
      load16<TPPP_DTYPE_F16>(p + static_cast<size_t>(r) * row, lo, hi);
    _mm256_storeu_ps(dst + r * kNr, lo);
    _mm256_storeu_ps(dst + r * kNr + 8, hi);
  }
}

// 8 elements of dtype dt at p[i..i+8), in order, as f32.
TPPP_AVX2 inline __m256 load8(const void* p, int32_t dt, int64_t i) {
  if (dt == TPPP_DTYPE_F32) return _mm256_loadu_ps(static_cast<const float*>(p) + i);
  const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(p) + i));
  if (dt == TPPP_DTYPE_BF16) return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(v), 16));
  return _mm256_cvtph_ps(v);
}

TPPP_AVX2 float dot_avx2(const float* a, const void* b, int32_t bdt, int64_t n) {
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), load8(b, bdt, i), s0);
    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), load8(b, bdt, i + 8), s1);
  }
  for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), load8(b, bdt, i), s0);
  float s = hsum(_mm256_add_ps(s0, s1));
  for (; i < n; i++) s += a[i] * load_float(bdt, b, static_cast<size_t>(i));
  return s;
}

TPPP_AVX2 void axpy_avx2(float* y, float p, const void* x, int32_t xdt, int64_t n) {
  const __m256 vp = _mm256_set1_ps(p);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(vp, load8(x, xdt, i), _mm256_loadu_ps(y + i)));
  for (; i < n; i++) y[i] += p * load_float(xdt, x, static_cast<size_t>(i));
}

// One cached row widened once into a small f32 buffer (L1), then every
// query row against it: no call, widening or horizontal-sum setup per pair.
constexpr int64_t kRowMax = 512;

TPPP_AVX2 void dots_avx2(const float* q, int64_t nq, int64_t d, const void* k, int32_t dt, float* s, int64_t lds) {
  if (d > kRowMax || d % 8) {
    for (int64_t r = 0; r < nq; r++) s[r * lds] = dot_avx2(q + r * d, k, dt, d);
    return;
  }
  alignas(32) float kb[kRowMax];
  for (int64_t c = 0; c < d; c += 8) _mm256_store_ps(kb + c, load8(k, dt, c));
  for (int64_t r = 0; r < nq; r++) {
    const float* qr = q + r * d;
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int64_t c = 0;
    for (; c + 16 <= d; c += 16) {
      a0 = _mm256_fmadd_ps(_mm256_loadu_ps(qr + c), _mm256_load_ps(kb + c), a0);
      a1 = _mm256_fmadd_ps(_mm256_loadu_ps(qr + c + 8), _mm256_load_ps(kb + c + 8), a1);
    }
    if (c < d) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(qr + c), _mm256_load_ps(kb + c), a0);
    s[r * lds] = hsum(_mm256_add_ps(a0, a1));
  }
}

TPPP_AVX2 void axpys_avx2(float* o, int64_t nq, int64_t d, const float* p, int64_t ldp, const void* v, int32_t dt) {
  if (d > kRowMax || d % 8) {
    for (int64_t r = 0; r < nq; r++) axpy_avx2(o + r * d, p[r * ldp], v, dt, d);
    return;
  }
  alignas(32) float vb[kRowMax];
  for (int64_t c = 0; c < d; c += 8) _mm256_store_ps(vb + c, load8(v, dt, c));
  for (int64_t r = 0; r < nq; r++) {
    float* orow = o + r * d;
    const __m256 pr = _mm256_set1_ps(p[r * ldp]);
    for (int64_t c = 0; c < d; c += 8)
      _mm256_storeu_ps(orow + c, _mm256_fmadd_ps(pr, _mm256_load_ps(vb + c), _mm256_loadu_ps(orow + c)));
  }
}

TPPP_AVX2 void to_f32_avx2(const void* src, int32_t dt, float* dst, int64_t n) {
  if (dt == TPPP_DTYPE_F32) {
    std::memcpy(dst, src, static_cast<size_t>(n) * 4);
    return;
  }
  const uint16_t* s = static_cast<const uint16_t*>(src);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i));
    _mm256_storeu_ps(dst + i, dt == TPPP_DTYPE_BF16
                                  ? _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(v), 16))
                                  : _mm256_cvtph_ps(v));
  }
  for (; i < n; i++) dst[i] = load_float(dt, s, static_cast<size_t>(i));
}

TPPP_AVX2 void from_f32_avx2(const float* src, void* dst, int32_t dt, int64_t n) {
  if (dt != TPPP_DTYPE_BF16) {  // F32: a copy; F16: core's software rounding (rare on CPUs)
    convert_dtype(src, TPPP_DTYPE_F32, dst, dt, static_cast<size_t>(n));
    return;
  }
  uint16_t* d = static_cast<uint16_t*>(dst);
  const __m256i abs_mask = _mm256_set1_epi32(0x7fffffff), inf = _mm256_set1_epi32(0x7f800000);
  const __m256i bias = _mm256_set1_epi32(0x7fff), one = _mm256_set1_epi32(1), quiet = _mm256_set1_epi32(0x40);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256i u = _mm256_castps_si256(_mm256_loadu_ps(src + i));
    const __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, abs_mask), inf);
    const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), one);
    const __m256i r = _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(bias, lsb)), 16);
    const __m256i q = _mm256_or_si256(_mm256_srli_epi32(u, 16), quiet);
    const __m256i h = _mm256_blendv_epi8(r, q, nan);
    // 8 x u32 (each < 65536) -> 8 x u16
    const __m128i p = _mm_packus_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(d + i), p);
  }
  for (; i < n; i++) d[i] = f32_to_bf16(src[i]);
}

// exp(x) for x <= 0 (the only side silu needs: exp(-|g|)): Cephes' range
// reduction and degree-6 polynomial, ~1 ulp; underflows to 0.
TPPP_AVX2 inline __m256 exp_neg(__m256 x) {
  x = _mm256_max_ps(x, _mm256_set1_ps(-87.3f));
  const __m256 fx = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 y = _mm256_set1_ps(1.9875691500E-4f);
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.3981999507E-3f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(8.3334519073E-3f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(4.1665795894E-2f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.6666665459E-1f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(5.0000001201E-1f));
  y = _mm256_fmadd_ps(y, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(fx), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}

TPPP_AVX2 float exp_sum_avx2(float* s, int64_t n, float mx) {
  const __m256 m = _mm256_set1_ps(mx);
  __m256 acc = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 e = exp_neg(_mm256_sub_ps(_mm256_loadu_ps(s + i), m));
    _mm256_storeu_ps(s + i, e);
    acc = _mm256_add_ps(acc, e);
  }
  float sum = hsum(acc);
  for (; i < n; i++) sum += (s[i] = std::exp(s[i] - mx));
  return sum;
}

TPPP_AVX2 void silu_mul_avx2(const float* g, const float* u, float* out, int64_t n) {
  const __m256 one = _mm256_set1_ps(1.0f), sign = _mm256_set1_ps(-0.0f);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 x = _mm256_loadu_ps(g + i);
    const __m256 e = exp_neg(_mm256_or_ps(x, sign));  // exp(-|x|)
    // sigmoid(x) = 1 / (1 + exp(-x)): for x < 0 that is e / (1 + e)
    const __m256 d = _mm256_add_ps(one, e);
    const __m256 neg = _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_LT_OQ);
    const __m256 sig = _mm256_div_ps(_mm256_blendv_ps(one, e, neg), d);
    _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_mul_ps(x, sig), _mm256_loadu_ps(u + i)));
  }
  for (; i < n; i++) out[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
}

const Kernels kAvx2 = {"avx2",      tile_avx2,     panel_to_f32_avx2, dots_avx2,    axpys_avx2,
                       to_f32_avx2, from_f32_avx2, exp_sum_avx2,      silu_mul_avx2};

bool cpu_has_avx2() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
}
#endif

const Kernels& pick() {
  const std::string isa = env_str(Env::CpuIsa);
  if (!isa.empty() && isa != "auto" && isa != "generic" && isa != "avx2")
    fail(TPPP_ERR_INVALID_ARGUMENT, "environment variable TPPP_CPU_ISA='%s' is not auto, avx2 or generic",
         isa.c_str());
  if (isa == "generic") return kGeneric;
#if defined(__x86_64__)
  if (cpu_has_avx2()) return kAvx2;
#endif
  if (isa == "avx2") fail(TPPP_ERR_NOT_SUPPORTED, "TPPP_CPU_ISA=avx2, but this CPU lacks AVX2, FMA or F16C");
  return kGeneric;
}

}  // namespace

const Kernels& kernels() {
  static const Kernels& k = pick();
  return k;
}

const Kernels& generic_kernels() { return kGeneric; }

const Kernels* avx2_kernels() {
#if defined(__x86_64__)
  if (cpu_has_avx2()) return &kAvx2;
#endif
  return nullptr;
}

}  // namespace cpu
}  // namespace tppp
