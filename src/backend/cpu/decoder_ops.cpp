// CPU decoder ops: plain loops in f32 over rows (the oracle the CUDA kernels
// are checked against). Attention takes each token and kv head once: the
// query heads that share the kv head score every cached position (the K row
// read once for all of them), then softmax, then the weighted sum of V rows;
// only a [group, kv_len] score row is kept, never [tokens, positions].
#include "backend/cpu/decoder_ops.hpp"

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

void attention(const void* q, int64_t ldq, int64_t m, int64_t nh, int64_t kvh, int64_t d, const void* k_cache,
               const void* v_cache, int64_t page_size, const int32_t* kv_len, const int32_t* page_off,
               const int32_t* pages, float scale, void* out, int32_t dt) {
  const int64_t group = nh / kvh;
  const bool f32 = dt == TPPP_DTYPE_F32;
  std::vector<float> qg(at(group * d)), acc(at(group * d)), row(at(d)), sum(at(group)), sc;
  // Row p of a sequence's K (or V) for kv head kh, as f32 (in place for f32 caches).
  auto cached = [&](const void* cache, int64_t t, int64_t p, int64_t kh) -> const float* {
    const int64_t slot = static_cast<int64_t>(pages[page_off[t] + p / page_size]) * page_size + p % page_size;
    const int64_t base = (slot * kvh + kh) * d;
    if (f32) return static_cast<const float*>(cache) + base;
    load(cache, dt, base, d, row.data());
    return row.data();
  };
  for (int64_t t = 0; t < m; t++) {
    const int64_t len = kv_len[t];
    sc.resize(at(group * len));
    for (int64_t kh = 0; kh < kvh; kh++) {
      for (int64_t g = 0; g < group; g++) load(q, dt, t * ldq + (kh * group + g) * d, d, qg.data() + g * d);
      for (int64_t p = 0; p < len; p++) {
        const float* k = cached(k_cache, t, p, kh);
        for (int64_t g = 0; g < group; g++) {
          const float* qv = qg.data() + g * d;
          float s0 = 0, s1 = 0, s2 = 0, s3 = 0;  // four partial sums: the loop vectorises
          int64_t i = 0;
          for (; i + 4 <= d; i += 4) {
            s0 += qv[i] * k[i];
            s1 += qv[i + 1] * k[i + 1];
            s2 += qv[i + 2] * k[i + 2];
            s3 += qv[i + 3] * k[i + 3];
          }
          for (; i < d; i++) s0 += qv[i] * k[i];
          sc[at(g * len + p)] = ((s0 + s1) + (s2 + s3)) * scale;
        }
      }
      std::fill(sum.begin(), sum.end(), 0.0f);
      for (int64_t g = 0; g < group; g++) {
        float* s = sc.data() + g * len;
        float mx = -INFINITY;
        for (int64_t p = 0; p < len; p++) mx = s[p] > mx ? s[p] : mx;
        for (int64_t p = 0; p < len; p++) {
          s[p] = std::exp(s[p] - mx);
          sum[at(g)] += s[p];
        }
      }
      std::fill(acc.begin(), acc.end(), 0.0f);
      for (int64_t p = 0; p < len; p++) {
        const float* v = cached(v_cache, t, p, kh);
        for (int64_t g = 0; g < group; g++) {
          const float e = sc[at(g * len + p)];
          float* a = acc.data() + g * d;
          for (int64_t i = 0; i < d; i++) a[i] += e * v[i];
        }
      }
      for (int64_t g = 0; g < group; g++) {
        float* a = acc.data() + g * d;
        const float inv = sum[at(g)] > 0 ? 1.0f / sum[at(g)] : 0.0f;
        for (int64_t i = 0; i < d; i++) a[i] *= inv;
        store(out, dt, t * nh * d + (kh * group + g) * d, d, a);
      }
    }
  }
}

}  // namespace cpu
}  // namespace tppp
