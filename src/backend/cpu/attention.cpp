// The CPU backend's paged attention: flash-attention's online softmax over
// blocks of 64 cached positions, f32 arithmetic. The batch is cut into work
// items of (up to 16 consecutive tokens of one sequence) x (one kv head);
// the items of all sequences and heads share the pool's threads. An item's
// queries (its tokens times the query heads of that kv head's group) share
// each K and V row while it is in L1. Two ways through an item, by its rows:
//  - tiled (prefill, >= 12 rows): per block, K is widened from the pages into
//    a panel (positions as columns) and V into panels (head dims as
//    columns), then both products run on the GEMM's tile kernel: S = Q K^T,
//    the softmax update, O = O * corr + P V;
//  - direct (decode, a few rows): each cached row is widened once and meets
//    every query row of the item (scores, then P V), since packing a block
//    for three rows costs more than the products. The rows sit kv_heads
//    apart in the pages and the weights streaming through evict them from
//    L3 every step, so they are prefetched 8 ahead (a decode step at batch 1
//    went from 14.0 to 12.0 ms on SmolLM2 bf16 with that alone).
// Causality: row i sees kv_len[its token] positions; its P row is 0 beyond.
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

constexpr int64_t kTokens = 16;     // tokens per work item
constexpr int64_t kPositions = 64;  // cached positions per block (4 panels of kNr)
constexpr int64_t kTiledRows = 12;  // items with at least this many rows take the tiled way

inline size_t at(int64_t i) { return static_cast<size_t>(i); }

struct Item {
  int64_t t0, t1, kh;
};

struct Args {
  const void* q;
  int64_t ldq, nh, kvh, d, page_size, group;
  const void *k_cache, *v_cache;
  const int32_t *kv_len, *page_off, *pages;
  float scale;
  void* out;
  int32_t dt;
  size_t es;
  const Kernels* kr;
  // Cache row of position pos of the item's sequence, for kv head kh (elements).
  size_t slot(const int32_t* pg, int64_t pos, int64_t kh) const {
    return at(((static_cast<int64_t>(pg[pos / page_size]) * page_size + pos % page_size) * kvh + kh) * d);
  }
};

struct Scratch {
  std::vector<float> q, o, s, kp, vp, row, mx, l;
  std::vector<size_t> slots;
};

// Q rows of the item (scaled), O = 0, running max -inf and sum 0.
int64_t begin_item(const Args& a, const Item& w, Scratch& sc, int64_t* len) {
  const int64_t nq = (w.t1 - w.t0) * a.group, d = a.d;
  *len = 0;
  for (int64_t t = w.t0; t < w.t1; t++) *len = std::max<int64_t>(*len, a.kv_len[t]);
  sc.q.resize(at(nq * d));
  sc.o.assign(at(nq * d), 0.0f);
  sc.s.resize(at(nq * kPositions));
  sc.mx.assign(at(nq), -INFINITY);
  sc.l.assign(at(nq), 0.0f);
  for (int64_t i = 0; i < nq; i++) {
    const int64_t t = w.t0 + i / a.group, h = w.kh * a.group + i % a.group;
    float* qi = sc.q.data() + i * d;
    a.kr->to_f32(static_cast<const char*>(a.q) + at(t * a.ldq + h * d) * a.es, a.dt, qi, d);
    for (int64_t j = 0; j < d; j++) qi[j] *= a.scale;
  }
  return nq;
}

// Row i's softmax update over its scores si[0, pb) of the block at p0: P in
// place (0 past what it sees), O scaled by the correction.
void softmax_row(const Args& a, const Item& w, Scratch& sc, int64_t i, int64_t p0, int64_t pb, float* si) {
  const int64_t cnt = std::min<int64_t>(pb, a.kv_len[w.t0 + i / a.group] - p0);
  if (cnt <= 0) {
    std::fill(si, si + pb, 0.0f);
    return;
  }
  float bm = -INFINITY;
  for (int64_t j = 0; j < cnt; j++) bm = std::max(bm, si[j]);
  const float mnew = std::max(sc.mx[at(i)], bm);
  const float corr = std::exp(sc.mx[at(i)] - mnew);  // 0 on the first block
  const float sum = a.kr->exp_sum(si, cnt, mnew);
  std::fill(si + cnt, si + pb, 0.0f);
  if (corr != 1.0f) {
    float* oi = sc.o.data() + i * a.d;
    for (int64_t c = 0; c < a.d; c++) oi[c] *= corr;
  }
  sc.l[at(i)] = sc.l[at(i)] * corr + sum;
  sc.mx[at(i)] = mnew;
}

void end_item(const Args& a, const Item& w, Scratch& sc, int64_t nq) {
  for (int64_t i = 0; i < nq; i++) {
    const int64_t t = w.t0 + i / a.group, h = w.kh * a.group + i % a.group;
    float* oi = sc.o.data() + i * a.d;
    const float inv = sc.l[at(i)] > 0 ? 1.0f / sc.l[at(i)] : 0.0f;
    for (int64_t j = 0; j < a.d; j++) oi[j] *= inv;
    a.kr->from_f32(oi, static_cast<char*>(a.out) + at(t * a.nh * a.d + h * a.d) * a.es, a.dt, a.d);
  }
}

void item_direct(const Args& a, const Item& w, Scratch& sc) {
  int64_t len = 0;
  const int64_t nq = begin_item(a, w, sc, &len), d = a.d;
  const int32_t* pg = a.pages + a.page_off[w.t0];
  const char *kc = static_cast<const char*>(a.k_cache), *vc = static_cast<const char*>(a.v_cache);
  sc.slots.resize(at(kPositions));
  for (int64_t p0 = 0; p0 < len; p0 += kPositions) {
    const int64_t pb = std::min(kPositions, len - p0);
    const size_t row = at(d) * a.es;
    for (int64_t j = 0; j < pb; j++) {
      sc.slots[at(j)] = a.slot(pg, p0 + j, w.kh) * a.es;
      if (j < 8)
        for (size_t b = 0; b < row; b += 64) __builtin_prefetch(kc + sc.slots[at(j)] + b);
    }
    for (int64_t j = 0; j < pb; j++) {  // every row's score against cached row j at once
      if (j + 8 < pb)  // the rows are kv_heads apart in the pages: ask for them ahead
        for (size_t b = 0; b < row; b += 64) __builtin_prefetch(kc + sc.slots[at(j + 8)] + b);
      a.kr->dots(sc.q.data(), nq, d, kc + sc.slots[at(j)], a.dt, sc.s.data() + j, kPositions);
    }
    for (int64_t j = 0; j < std::min<int64_t>(8, pb); j++)
      for (size_t b = 0; b < row; b += 64) __builtin_prefetch(vc + sc.slots[at(j)] + b);
    for (int64_t i = 0; i < nq; i++) softmax_row(a, w, sc, i, p0, pb, sc.s.data() + i * kPositions);
    for (int64_t j = 0; j < pb; j++) {  // P is 0 past what a row sees
      if (j + 8 < pb)
        for (size_t b = 0; b < row; b += 64) __builtin_prefetch(vc + sc.slots[at(j + 8)] + b);
      a.kr->axpys(sc.o.data(), nq, d, sc.s.data() + j, kPositions, vc + sc.slots[at(j)], a.dt);
    }
  }
  end_item(a, w, sc, nq);
}

void item_tiled(const Args& a, const Item& w, Scratch& sc) {
  int64_t len = 0;
  const int64_t nq = begin_item(a, w, sc, &len), d = a.d, dpan = (d + kNr - 1) / kNr;
  const Kernels& kr = *a.kr;
  sc.kp.resize(at(kPositions * d));
  sc.vp.resize(at(dpan * kPositions * kNr));
  sc.row.resize(at(d));
  const int32_t* pg = a.pages + a.page_off[w.t0];
  for (int64_t p0 = 0; p0 < len; p0 += kPositions) {
    const int64_t pb = std::min(kPositions, len - p0), kpan = (pb + kNr - 1) / kNr;
    // K into panels [kpan][d][kNr] (position j is column j % kNr of panel j / kNr), V into
    // panels [dpan][pb][kNr] (dim c is column c % kNr of panel c / kNr). Columns past pb (K)
    // or d (V) hold stale values: they feed only tile columns that are never stored.
    for (int64_t j = 0; j < pb; j++) {
      const size_t slot = a.slot(pg, p0 + j, w.kh) * a.es;
      kr.to_f32(static_cast<const char*>(a.k_cache) + slot, a.dt, sc.row.data(), d);
      float* kcol = sc.kp.data() + (j / kNr) * d * kNr + j % kNr;
      for (int64_t c = 0; c < d; c++) kcol[c * kNr] = sc.row[at(c)];
      kr.to_f32(static_cast<const char*>(a.v_cache) + slot, a.dt, sc.row.data(), d);
      for (int64_t c0 = 0; c0 < d; c0 += kNr)
        std::copy(sc.row.begin() + c0, sc.row.begin() + std::min(d, c0 + kNr),
                  sc.vp.begin() + (c0 / kNr) * kPositions * kNr + j * kNr);
    }
    for (int64_t m0 = 0; m0 < nq; m0 += kMr)  // S[nq, pb] = Q K^T
      for (int64_t pp = 0; pp < kpan; pp++)
        kr.tile(static_cast<int>(std::min<int64_t>(kMr, nq - m0)), d, sc.q.data() + m0 * d, d,
                sc.kp.data() + pp * d * kNr, TPPP_DTYPE_F32, sc.s.data() + m0 * kPositions + pp * kNr, kPositions,
                static_cast<int>(std::min<int64_t>(kNr, pb - pp * kNr)), false);
    for (int64_t i = 0; i < nq; i++) softmax_row(a, w, sc, i, p0, pb, sc.s.data() + i * kPositions);
    for (int64_t m0 = 0; m0 < nq; m0 += kMr)  // O += P V
      for (int64_t c = 0; c < dpan; c++)
        kr.tile(static_cast<int>(std::min<int64_t>(kMr, nq - m0)), pb, sc.s.data() + m0 * kPositions, kPositions,
                sc.vp.data() + c * kPositions * kNr, TPPP_DTYPE_F32, sc.o.data() + m0 * d + c * kNr, d,
                static_cast<int>(std::min<int64_t>(kNr, d - c * kNr)), true);
  }
  end_item(a, w, sc, nq);
}

}  // namespace

void attention(const void* q, int64_t ldq, int64_t m, int64_t nh, int64_t kvh, int64_t d, const void* k_cache,
               const void* v_cache, int64_t page_size, const int32_t* kv_len, const int32_t* page_off,
               const int32_t* pages, float scale, void* out, int32_t dt) {
  const Args a{q,       ldq,     nh,       kvh,   d,   page_size,       nh / kvh,   k_cache,
               v_cache, kv_len,  page_off, pages, scale, out, dt, dtype_size(dt), &kernels()};
  std::vector<Item> items;
  for (int64_t t0 = 0; t0 < m;) {
    int64_t t1 = t0 + 1;
    while (t1 < m && t1 - t0 < kTokens && page_off[t1] == page_off[t0]) t1++;
    for (int64_t kh = 0; kh < kvh; kh++) items.push_back(Item{t0, t1, kh});
    t0 = t1;
  }
  std::atomic<size_t> next{0};
  pool().parallel(
      [&](int, int) {
        thread_local Scratch sc;
        for (size_t it = next.fetch_add(1); it < items.size(); it = next.fetch_add(1)) {
          const Item& w = items[it];
          if ((w.t1 - w.t0) * a.group < kTiledRows)
            item_direct(a, w, sc);
          else
            item_tiled(a, w, sc);
        }
      },
      static_cast<int>(items.size()));
}

}  // namespace cpu
}  // namespace tppp
