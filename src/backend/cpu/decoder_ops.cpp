// CPU decoder ops: plain loops in f32 over rows (the oracle the CUDA kernels
// are checked against): RMSNorm, Qwen3's head norm, RoPE, the KV write.
// Attention has its own file (attention.cpp).
#include "backend/cpu/decoder_ops.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "c_api.h"
#include "core/dtype.hpp"

namespace tppp {
namespace cpu {
namespace {

inline size_t at(int64_t i) { return static_cast<size_t>(i); }

// x[0..h) in dt -> f32 (the contiguous run starting at element `off`).
void load(const void* p, int32_t dt, int64_t off, int64_t h, float* out) {
  if (dt == TPPP_DTYPE_F32) {
    std::memcpy(out, static_cast<const float*>(p) + off, at(h) * 4);
    return;
  }
  for (int64_t i = 0; i < h; i++) out[i] = load_float(dt, p, at(off + i));
}
void store(void* p, int32_t dt, int64_t off, int64_t h, const float* in) {
  if (dt == TPPP_DTYPE_F32) {
    std::memcpy(static_cast<float*>(p) + off, in, at(h) * 4);
    return;
  }
  for (int64_t i = 0; i < h; i++) store_float(dt, p, at(off + i), in[i]);
}

// v[0..h) *= w / rms(v), w in dt.
void norm_in_place(float* v, int64_t h, const void* w, float eps, int32_t dt) {
  double ss = 0;
  for (int64_t i = 0; i < h; i++) ss += static_cast<double>(v[i]) * v[i];
  const float inv = 1.0f / std::sqrt(static_cast<float>(ss / static_cast<double>(h)) + eps);
  // transformers: (x * rsqrt(var + eps)).to(dtype) * weight
  for (int64_t i = 0; i < h; i++) v[i] = round_to(dt, v[i] * inv) * load_float(dt, w, at(i));
}

}  // namespace

void rms_norm(const void* x, void* residual, const void* w, void* out, int64_t m, int64_t h, float eps, int32_t dt) {
  std::vector<float> v(at(h)), r(at(h));
  for (int64_t row = 0; row < m; row++) {
    load(x, dt, row * h, h, v.data());
    if (residual) {
      load(residual, dt, row * h, h, r.data());
      for (int64_t i = 0; i < h; i++) v[i] = round_to(dt, v[i] + r[i]);
      store(residual, dt, row * h, h, v.data());
    }
    norm_in_place(v.data(), h, w, eps, dt);
    store(out, dt, row * h, h, v.data());
  }
}

void head_rms_norm(void* x, int64_t m, int64_t n, int64_t d, int64_t ld, const void* w, float eps, int32_t dt) {
  std::vector<float> v(at(d));
  for (int64_t row = 0; row < m; row++)
    for (int64_t hd = 0; hd < n; hd++) {
      const int64_t off = row * ld + hd * d;
      load(x, dt, off, d, v.data());
      norm_in_place(v.data(), d, w, eps, dt);
      store(x, dt, off, d, v.data());
    }
}

void rope(void* x, int64_t m, int64_t n, int64_t d, int64_t ld, const int32_t* pos, const float* inv_freq, int32_t dt) {
  const int64_t half = d / 2;
  std::vector<float> c(at(half)), s(at(half)), v(at(d));
  for (int64_t row = 0; row < m; row++) {
    for (int64_t i = 0; i < half; i++) {
      const float ang = static_cast<float>(pos[row]) * inv_freq[i];  // f32, as transformers
      c[at(i)] = round_to(dt, static_cast<float>(std::cos(static_cast<double>(ang))));
      s[at(i)] = round_to(dt, static_cast<float>(std::sin(static_cast<double>(ang))));
    }
    for (int64_t hd = 0; hd < n; hd++) {
      const int64_t off = row * ld + hd * d;
      load(x, dt, off, d, v.data());
      for (int64_t i = 0; i < half; i++) {
        const float a = v[at(i)], b = v[at(i + half)];
        v[at(i)] = a * c[at(i)] - b * s[at(i)];
        v[at(i + half)] = b * c[at(i)] + a * s[at(i)];
      }
      store(x, dt, off, d, v.data());
    }
  }
}

void kv_write(const void* k, const void* v, int64_t ld, int64_t m, int64_t kvh, int64_t d, const int32_t* slot,
              void* k_cache, void* v_cache, int32_t dt) {
  const size_t es = dtype_size(dt), row = at(kvh * d) * es;
  for (int64_t r = 0; r < m; r++) {
    const size_t dst = at(slot[r]) * row, src = at(r * ld) * es;
    std::memcpy(static_cast<char*>(k_cache) + dst, static_cast<const char*>(k) + src, row);
    std::memcpy(static_cast<char*>(v_cache) + dst, static_cast<const char*>(v) + src, row);
  }
}

}  // namespace cpu
}  // namespace tppp
