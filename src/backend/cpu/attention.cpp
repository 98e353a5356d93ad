// The CPU backend's paged attention: flash-attention's online softmax over
// blocks of 64 cached positions, read straight from the pages in the cache's
// dtype (widened in registers; no gather, no f32 copy of K and V), f32
// arithmetic. The batch is cut into work items of (up to 8 consecutive
// tokens of one sequence) x (one kv head); the items of all sequences and
// heads share the pool's threads, and an item's K and V rows serve all its
// queries (its tokens times the query heads of that kv head's group) while
// they are in L1.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <vector>

#include "backend/cpu/decoder_ops.hpp"
#include "backend/cpu/simd.hpp"
#include "backend/cpu/thread_pool.hpp"
#include "core/dtype.hpp"

namespace tppp {
namespace cpu {
namespace {

constexpr int64_t kTokens = 8;      // tokens per work item
constexpr int64_t kPositions = 64;  // cached positions per block

struct Item {
  int64_t t0, t1, kh;
};

struct Scratch {
  std::vector<float> q, o, s, mx, l;
  std::vector<const char*> kp, vp;
};

}  // namespace

void attention(const void* q, int64_t ldq, int64_t m, int64_t nh, int64_t kvh, int64_t d, const void* k_cache,
               const void* v_cache, int64_t page_size, const int32_t* kv_len, const int32_t* page_off,
               const int32_t* pages, float scale, void* out, int32_t dt) {
  const int64_t group = nh / kvh;
  std::vector<Item> items;
  for (int64_t t0 = 0; t0 < m;) {
    int64_t t1 = t0 + 1;
    while (t1 < m && t1 - t0 < kTokens && page_off[t1] == page_off[t0]) t1++;
    for (int64_t kh = 0; kh < kvh; kh++) items.push_back(Item{t0, t1, kh});
    t0 = t1;
  }
  const Kernels& kr = kernels();
  const size_t es = dtype_size(dt);
  std::atomic<size_t> next{0};
  pool().parallel(
      [&](int, int) {
        thread_local Scratch sc;
        for (size_t it = next.fetch_add(1); it < items.size(); it = next.fetch_add(1)) {
          const Item& w = items[it];
          const int64_t nq = (w.t1 - w.t0) * group;
          int64_t len = 0;
          for (int64_t t = w.t0; t < w.t1; t++) len = std::max<int64_t>(len, kv_len[t]);
          sc.q.resize(static_cast<size_t>(nq * d));
          sc.o.assign(static_cast<size_t>(nq * d), 0.0f);
          sc.kp.resize(static_cast<size_t>(kPositions));
          sc.vp.resize(static_cast<size_t>(kPositions));
          sc.s.resize(static_cast<size_t>(kPositions));
          sc.mx.assign(static_cast<size_t>(nq), -INFINITY);
          sc.l.assign(static_cast<size_t>(nq), 0.0f);
          for (int64_t i = 0; i < nq; i++) {
            const int64_t t = w.t0 + i / group, h = w.kh * group + i % group;
            float* qi = sc.q.data() + i * d;
            kr.to_f32(static_cast<const char*>(q) + static_cast<size_t>(t * ldq + h * d) * es, dt, qi, d);
            for (int64_t j = 0; j < d; j++) qi[j] *= scale;
          }
          const int32_t* pg = pages + page_off[w.t0];
          for (int64_t p0 = 0; p0 < len; p0 += kPositions) {
            const int64_t pb = std::min(kPositions, len - p0);
            for (int64_t j = 0; j < pb; j++) {
              const int64_t pos = p0 + j;
              const size_t at = static_cast<size_t>(
                  ((static_cast<int64_t>(pg[pos / page_size]) * page_size + pos % page_size) * kvh + w.kh) * d);
              sc.kp[static_cast<size_t>(j)] = static_cast<const char*>(k_cache) + at * es;
              sc.vp[static_cast<size_t>(j)] = static_cast<const char*>(v_cache) + at * es;
            }
            for (int64_t i = 0; i < nq; i++) {
              // causal: token t sees kv_len[t] positions
              const int64_t cnt = std::min<int64_t>(pb, kv_len[w.t0 + i / group] - p0);
              if (cnt <= 0) continue;
              const float* qi = sc.q.data() + i * d;
              float* oi = sc.o.data() + i * d;
              float bm = -INFINITY;
              for (int64_t j = 0; j < cnt; j++) bm = std::max(bm, sc.s[j] = kr.dot(qi, sc.kp[j], dt, d));
              const float mnew = std::max(sc.mx[i], bm);
              const float corr = std::exp(sc.mx[i] - mnew);  // 0 on the first block
              float l = sc.l[i] * corr;
              if (corr != 1.0f) kr.scale_axpy(oi, corr, 0.0f, sc.vp[0], dt, d);
              for (int64_t j = 0; j < cnt; j++) {
                const float e = std::exp(sc.s[j] - mnew);
                l += e;
                kr.scale_axpy(oi, 1.0f, e, sc.vp[j], dt, d);
              }
              sc.mx[i] = mnew;
              sc.l[i] = l;
            }
          }
          for (int64_t i = 0; i < nq; i++) {
            const int64_t t = w.t0 + i / group, h = w.kh * group + i % group;
            float* oi = sc.o.data() + i * d;
            const float inv = sc.l[i] > 0 ? 1.0f / sc.l[i] : 0.0f;
            for (int64_t j = 0; j < d; j++) oi[j] *= inv;
            kr.from_f32(oi, static_cast<char*>(out) + static_cast<size_t>(t * nh * d + h * d) * es, dt, d);
          }
        }
      },
      static_cast<int>(items.size()));
}

}  // namespace cpu
}  // namespace tppp
