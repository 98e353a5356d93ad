// Sampling one row (see the header). Why Gumbel-max with keyed noise: the
// draw argmax_i(x_i + g_i), g_i = -log(-log u_i), picks token i with
// probability softmax(x)_i exactly, and u_i = keyed_uniform(seed, pos, i)
// depends on nothing but what identifies the draw (vLLM's v2 sampler does
// the same), so no generator state has to follow a request around.
#include "model/sampling.hpp"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <numeric>

#include "backend/backend.hpp"
#include "c_api.h"
#include "core/error.hpp"

namespace tppp {
namespace {

uint64_t mix(uint64_t z) {  // splitmix64's finaliser
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// x_i + g_i can beat the best x only if x_i >= max - kGumbelSpan: g lies in
// [-log(-log 2^-54), -log(-log(1 - 2^-54))] = [-3.6, 37.4].
constexpr double kGumbelSpan = 41.5;

bool cand_before(const Cand& a, const Cand& b) { return a.x > b.x || (a.x == b.x && a.id < b.id); }

// Descending by value, then ascending id (transformers' stable order for ties).
struct ByValue {
  const float* x;
  bool operator()(int32_t a, int32_t b) const { return x[a] > x[b] || (x[a] == x[b] && a < b); }
};

// The k-th largest of x[0, n) (NaN never counts). A min-heap of the best k
// seen: one comparison per value once it is full, since few values beat
// the heap's least (k ln(n/k) replacements expected). Measured on the
// 2-core VM, vocab 8192, k 50, 64 distinct random rows: ~25 us a row,
// against ~65 us for nth_element over a copy and ~90 us over indices.
// Large k: nth_element over a copy.
float kth_largest(const float* x, int32_t n, int32_t k) {
  std::vector<float> h;
  if (k > n / 8) {
    for (int32_t i = 0; i < n; i++)
      if (x[i] == x[i]) h.push_back(x[i]);
    if (h.size() < static_cast<size_t>(k)) return -std::numeric_limits<float>::infinity();
    std::nth_element(h.begin(), h.begin() + (k - 1), h.end(), std::greater<float>());
    return h[static_cast<size_t>(k - 1)];
  }
  h.reserve(static_cast<size_t>(k));
  const auto gt = std::greater<float>();  // min-heap
  for (int32_t i = 0; i < n; i++) {
    const float v = x[i];
    if (v != v) continue;
    if (h.size() < static_cast<size_t>(k)) {
      h.push_back(v);
      std::push_heap(h.begin(), h.end(), gt);
    } else if (v > h.front()) {
      std::pop_heap(h.begin(), h.end(), gt);
      h.back() = v;
      std::push_heap(h.begin(), h.end(), gt);
    }
  }
  return h.size() < static_cast<size_t>(k) ? -std::numeric_limits<float>::infinity() : h.front();
}

}  // namespace

double keyed_uniform(uint64_t seed, int64_t pos, int64_t token) {
  uint64_t h = mix(seed + 0x9E3779B97F4A7C15ull);
  h = mix(h ^ (static_cast<uint64_t>(pos) * 0xD1B54A32D192ED03ull));
  h = mix(h ^ (static_cast<uint64_t>(token) * 0xAEF17502108EF2D9ull + 0x632BE59BD9B4E019ull));
  return (static_cast<double>(h >> 11) + 0.5) * (1.0 / 9007199254740992.0);  // (0, 1)
}

bool is_greedy(const SamplingParams& p) { return p.temperature == 0.f; }

void check_sampling(const SamplingParams& p, const char* where) {
  auto bad = [&](const char* field, double v, const char* want) {
    fail(TPPP_ERR_INVALID_ARGUMENT, "%s: sampling %s %g %s", where, field, v, want);
  };
  if (!(p.temperature >= 0.f) || std::isinf(p.temperature)) bad("temperature", p.temperature, "must be finite and >= 0");
  if (p.top_k < 0) bad("top_k", p.top_k, "must be >= 0 (0: off)");
  if (!(p.top_p > 0.f && p.top_p <= 1.f)) bad("top_p", p.top_p, "must be in (0, 1]");
  if (!(p.min_p >= 0.f && p.min_p <= 1.f)) bad("min_p", p.min_p, "must be in [0, 1]");
  if (!(p.repetition_penalty > 0.f) || std::isinf(p.repetition_penalty))
    bad("repetition_penalty", p.repetition_penalty, "must be finite and > 0 (1: off)");
  if (!std::isfinite(p.frequency_penalty)) bad("frequency_penalty", p.frequency_penalty, "must be finite");
  if (!std::isfinite(p.presence_penalty)) bad("presence_penalty", p.presence_penalty, "must be finite");
  if (p.logprobs != 0 && p.logprobs != 1) bad("logprobs", p.logprobs, "must be 0 or 1");
  if (p.top_logprobs < 0 || p.top_logprobs > kMaxTopLogprobs) bad("top_logprobs", p.top_logprobs, "must be in [0, 20]");
}

void penalize(float* x, int64_t n, int64_t id0, const SamplingParams& p, const TokenHistory& h) {
  // repetition (transformers: divide a positive logit, multiply a negative
  // one, once per distinct token), then frequency and presence (OpenAI:
  // minus count * f + [count > 0] * p) over the output.
  std::vector<int32_t> seen(h.tokens, h.tokens + h.n);
  std::vector<int32_t> out(h.tokens + std::min(h.n, std::max<int64_t>(h.out_start, 0)), h.tokens + h.n);
  std::sort(seen.begin(), seen.end());
  seen.erase(std::unique(seen.begin(), seen.end()), seen.end());
  auto mine = [&](int32_t t) { return t >= id0 && t < id0 + n; };
  if (p.repetition_penalty != 1.f)
    for (int32_t t : seen)
      if (mine(t)) {
        float& v = x[t - id0];
        v = v < 0 ? v * p.repetition_penalty : v / p.repetition_penalty;
      }
  std::sort(out.begin(), out.end());
  for (size_t i = 0; i < out.size();) {
    size_t j = i;
    while (j < out.size() && out[j] == out[i]) j++;
    if (mine(out[i])) x[out[i] - id0] -= static_cast<float>(j - i) * p.frequency_penalty + p.presence_penalty;
    i = j;
  }
}

void top_k_cands(const float* x, int64_t n, int64_t id0, int32_t k, bool exactly_k, std::vector<Cand>* out) {
  out->clear();
  if (k >= n) {
    for (int64_t i = 0; i < n; i++) out->push_back(Cand{x[i], static_cast<int32_t>(id0 + i)});
    return;
  }
  const float kth = kth_largest(x, static_cast<int32_t>(n), k);
  for (int64_t i = 0; i < n; i++)
    if (x[i] >= kth) out->push_back(Cand{x[i], static_cast<int32_t>(id0 + i)});
  if (exactly_k && out->size() > static_cast<size_t>(k)) {  // ties at the k-th: the smaller ids
    std::sort(out->begin(), out->end(), cand_before);
    out->resize(static_cast<size_t>(k));
  }
}

int32_t draw_cands(std::vector<Cand>* cands, const SamplingParams& p, int64_t pos) {
  std::vector<Cand>& c = *cands;
  c.erase(std::remove_if(c.begin(), c.end(), [](const Cand& a) { return a.x != a.x; }), c.end());
  if (c.empty()) return -1;
  // Warpers in transformers' order on x / T. Each keeps the best token, so
  // the kept set's max is the max over all.
  const double inv_t = 1.0 / static_cast<double>(p.temperature);
  if (p.top_k > 0 && c.size() > static_cast<size_t>(p.top_k)) {  // again: c may hold several ranks' top-k
    std::vector<float> v(c.size());
    for (size_t i = 0; i < c.size(); i++) v[i] = c[i].x;
    const float kth = kth_largest(v.data(), static_cast<int32_t>(v.size()), p.top_k);
    c.erase(std::remove_if(c.begin(), c.end(), [kth](const Cand& a) { return a.x < kth; }), c.end());
  }
  float mx = c[0].x;
  for (const Cand& a : c) mx = std::max(mx, a.x);
  if (p.top_p < 1.f) {
    // transformers removes tokens whose ascending cumulative mass is <=
    // 1 - top_p: in descending order, a token stays while the mass of the
    // tokens before it is < top_p. Sorted lazily: the head is enough.
    double z = 0;
    for (const Cand& a : c) z += std::exp((static_cast<double>(a.x) - mx) * inv_t);
    size_t sorted = 0, keep = 0;
    double before = 0;
    for (size_t want = 64;; want *= 2) {
      const size_t m = std::min(want, c.size());
      std::partial_sort(c.begin() + static_cast<long>(sorted), c.begin() + static_cast<long>(m), c.end(), cand_before);
      sorted = m;
      while (keep < sorted && before < static_cast<double>(p.top_p)) {
        before += std::exp((static_cast<double>(c[keep].x) - mx) * inv_t) / z;
        keep++;
      }
      if (keep < sorted || sorted == c.size()) break;
    }
    c.resize(std::max<size_t>(keep, 1));
  }
  double floor_x = -std::numeric_limits<double>::infinity();  // min-p: p_i >= min_p * p_max
  if (p.min_p > 0.f) floor_x = static_cast<double>(mx) + std::log(static_cast<double>(p.min_p)) / inv_t;
  const double prune = static_cast<double>(mx) * inv_t - kGumbelSpan;
  double best = -std::numeric_limits<double>::infinity();
  int32_t pick = -1;
  for (const Cand& a : c) {
    const double xi = static_cast<double>(a.x);
    if (xi < floor_x) continue;
    const double v = xi * inv_t;
    if (!(v >= prune)) continue;
    const double g = -std::log(-std::log(keyed_uniform(p.seed, pos, a.id)));
    if (v + g > best || (v + g == best && a.id < pick)) {
      best = v + g;
      pick = a.id;
    }
  }
  return pick;
}

Draw sample_row(const float* logits, int64_t V, const SamplingParams& p, const TokenHistory& h, int64_t pos,
                std::vector<float>* scratch) {
  Draw d;
  const int32_t n = static_cast<int32_t>(V);
  // Raw logprobs first (vLLM's default): log_softmax of the model's logits.
  double lse = 0;
  if (wants_logprobs(p)) {
    float mx = -std::numeric_limits<float>::infinity();
    for (int32_t i = 0; i < n; i++) mx = std::max(mx, logits[i]);
    double z = 0;
    for (int32_t i = 0; i < n; i++) z += std::exp(static_cast<double>(logits[i]) - mx);
    lse = mx + std::log(z);
    if (p.top_logprobs > 0) {
      const int32_t k = std::min<int32_t>(p.top_logprobs, n);
      std::vector<int32_t> idx(static_cast<size_t>(n));
      std::iota(idx.begin(), idx.end(), 0);
      std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), ByValue{logits});
      for (int32_t r = 0; r < k; r++) {
        d.top_ids.push_back(idx[static_cast<size_t>(r)]);
        d.top_logprobs.push_back(static_cast<float>(logits[idx[static_cast<size_t>(r)]] - lse));
      }
    }
  }
  // Penalties on a copy, then the draw among the candidates: the top-k
  // filter's tokens, or every token.
  const float* x = logits;
  if (has_penalties(p)) {
    scratch->assign(logits, logits + n);
    penalize(scratch->data(), n, 0, p, h);
    x = scratch->data();
  }
  int32_t pick = -1;
  if (is_greedy(p)) {
    pick = 0;
    for (int32_t c = 1; c < n; c++)
      if (argmax_better(x[c], c, x[pick], pick)) pick = c;
  } else {
    std::vector<Cand> c;
    if (p.top_k > 0 && p.top_k < n) {
      top_k_cands(x, n, 0, p.top_k, false, &c);
    } else {
      c.resize(static_cast<size_t>(n));
      for (int32_t i = 0; i < n; i++) c[static_cast<size_t>(i)] = Cand{x[i], i};
    }
    pick = draw_cands(&c, p, pos);
    if (pick < 0) {  // every logit NaN or -inf: the greedy rule decides
      pick = 0;
      for (int32_t i = 1; i < n; i++)
        if (argmax_better(x[i], i, x[pick], pick)) pick = i;
    }
  }
  d.id = pick;
  if (wants_logprobs(p)) d.logprob = static_cast<float>(logits[pick] - lse);
  return d;
}

}  // namespace tppp
