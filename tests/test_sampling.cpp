// The sampler (src/model/sampling.cpp), pure: for each filter, frequencies
// over >= 20k keyed draws against a float64 reference of transformers'
// order (penalties, temperature, top-k, top-p, min-p), by chi-square with a
// threshold a wrong filter fails (checked: the same draws against a
// neighbouring filter's distribution fail it); greedy ties; raw logprobs;
// draws keyed on (seed, position, token) alone.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <random>
#include <vector>

#include "c_api.h"
#include "core/error.hpp"
#include "model/sampling.hpp"

using tppp::SamplingParams;

namespace {

std::vector<float> random_logits(int n, uint32_t seed, float scale) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.f, scale);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = d(rng);
  return v;
}

// transformers' order in float64, written independently of the library.
std::vector<double> reference(const std::vector<float>& lg, const SamplingParams& p, const std::vector<int32_t>& hist,
                              size_t out_start) {
  const size_t n = lg.size();
  std::vector<double> x(lg.begin(), lg.end());
  std::vector<int> seen(n, 0), cnt(n, 0);
  for (size_t i = 0; i < hist.size(); i++) {
    seen[static_cast<size_t>(hist[i])] = 1;
    if (i >= out_start) cnt[static_cast<size_t>(hist[i])]++;
  }
  for (size_t i = 0; i < n; i++) {
    if (seen[i]) x[i] = x[i] < 0 ? x[i] * p.repetition_penalty : x[i] / p.repetition_penalty;
    x[i] -= cnt[i] * static_cast<double>(p.frequency_penalty) + (cnt[i] > 0 ? p.presence_penalty : 0.0);
    x[i] /= p.temperature;
  }
  std::vector<bool> keep(n, true);
  if (p.top_k > 0) {
    std::vector<double> s = x;
    std::sort(s.rbegin(), s.rend());
    for (size_t i = 0; i < n; i++) keep[i] = x[i] >= s[static_cast<size_t>(p.top_k - 1)];
  }
  auto softmax = [&]() {
    std::vector<double> pr(n, 0);
    double mx = -1e300, z = 0;
    for (size_t i = 0; i < n; i++)
      if (keep[i]) mx = std::max(mx, x[i]);
    for (size_t i = 0; i < n; i++)
      if (keep[i]) z += pr[i] = std::exp(x[i] - mx);
    for (auto& v : pr) v /= z;
    return pr;
  };
  if (p.top_p < 1.f) {
    std::vector<double> pr = softmax();
    std::vector<size_t> idx(n);
    std::iota(idx.begin(), idx.end(), 0);
    std::sort(idx.begin(), idx.end(), [&](size_t a, size_t b) { return x[a] < x[b]; });
    double cum = 0;
    for (size_t r = 0; r + 1 < n; r++) {
      cum += pr[idx[r]];
      if (cum <= 1.0 - p.top_p) keep[idx[r]] = false;
    }
  }
  if (p.min_p > 0.f) {
    std::vector<double> pr = softmax();
    const double mx = *std::max_element(pr.begin(), pr.end());
    for (size_t i = 0; i < n; i++)
      if (pr[i] < p.min_p * mx) keep[i] = false;
  }
  return softmax();
}

struct Fit {
  double chi2 = 0;
  int df = 0;
  int outside = 0;  // draws of tokens the reference gives 0
  double limit() const { return df + 4.0 * std::sqrt(2.0 * df) + 5; }
  bool ok() const { return outside == 0 && chi2 < limit(); }
};

Fit fit(const std::vector<int>& counts, const std::vector<double>& want, int draws) {
  Fit f;
  for (size_t i = 0; i < want.size(); i++) {
    if (want[i] <= 0) {
      f.outside += counts[i];
      continue;
    }
    const double e = want[i] * draws;
    f.chi2 += (counts[i] - e) * (counts[i] - e) / e;
    f.df++;
  }
  f.df = std::max(1, f.df - 1);
  return f;
}

std::vector<int> draw_many(const std::vector<float>& lg, const SamplingParams& p, const std::vector<int32_t>& hist,
                           int64_t out_start, int draws) {
  std::vector<int> c(lg.size(), 0);
  std::vector<float> scratch;
  const tppp::TokenHistory h{hist.data(), static_cast<int64_t>(hist.size()), out_start};
  for (int k = 0; k < draws; k++) {
    const tppp::Draw d = tppp::sample_row(lg.data(), static_cast<int64_t>(lg.size()), p, h, 1000 + k, &scratch);
    REQUIRE(d.id >= 0);
    REQUIRE(d.id < static_cast<int32_t>(lg.size()));
    c[static_cast<size_t>(d.id)]++;
  }
  return c;
}

}  // namespace

TEST_SUITE("sampling") {
  TEST_CASE("keyed uniforms: in (0, 1), flat, and a pure function of (seed, position, token)") {
    std::vector<int> bins(64, 0);
    const int n = 64000;
    for (int i = 0; i < n; i++) {
      const double u = tppp::keyed_uniform(7, i / 100, i % 100);
      REQUIRE(u > 0.0);
      REQUIRE(u < 1.0);
      bins[static_cast<size_t>(u * 64)]++;
    }
    double chi2 = 0;
    for (int b : bins) chi2 += (b - n / 64.0) * (b - n / 64.0) / (n / 64.0);
    CHECK_MESSAGE(chi2 < 63 + 6 * std::sqrt(126.0), "chi2 ", chi2);
    CHECK(tppp::keyed_uniform(1, 2, 3) == tppp::keyed_uniform(1, 2, 3));
    CHECK(tppp::keyed_uniform(1, 2, 3) != tppp::keyed_uniform(2, 2, 3));
    CHECK(tppp::keyed_uniform(1, 2, 3) != tppp::keyed_uniform(1, 3, 3));
    CHECK(tppp::keyed_uniform(1, 2, 3) != tppp::keyed_uniform(1, 2, 4));
  }

  TEST_CASE("each filter: 24k draws against the float64 softmax of transformers' order (chi-square)") {
    const std::vector<float> lg = random_logits(60, 11, 1.5f);
    std::vector<int32_t> hist = {3, 5, 5, 7, 9, 9, 9, 11};  // out_start 3: output 5, 7, 9, 9, 9, 11
    struct Case {
      const char* name;
      SamplingParams p;
      SamplingParams neighbour;  // a slightly different filter the same draws must fail
    };
    auto mk = [](float t, int k, float tp, float mp, float rep = 1.f, float fr = 0.f, float pr = 0.f) {
      SamplingParams p;
      p.temperature = t;
      p.top_k = k;
      p.top_p = tp;
      p.min_p = mp;
      p.repetition_penalty = rep;
      p.frequency_penalty = fr;
      p.presence_penalty = pr;
      p.seed = 1234;
      return p;
    };
    const Case cases[] = {
        {"temperature 1", mk(1.f, 0, 1.f, 0.f), mk(1.15f, 0, 1.f, 0.f)},
        {"temperature 0.6", mk(0.6f, 0, 1.f, 0.f), mk(0.7f, 0, 1.f, 0.f)},
        {"top-k 7", mk(1.f, 7, 1.f, 0.f), mk(1.f, 6, 1.f, 0.f)},
        {"top-p 0.7", mk(1.f, 0, 0.7f, 0.f), mk(1.f, 0, 0.6f, 0.f)},
        {"min-p 0.1", mk(1.f, 0, 1.f, 0.1f), mk(1.f, 0, 1.f, 0.03f)},
        {"all four", mk(0.8f, 20, 0.9f, 0.05f), mk(1.1f, 20, 0.9f, 0.05f)},
        {"repetition 2", mk(1.f, 0, 1.f, 0.f, 2.f), mk(1.f, 0, 1.f, 0.f, 1.0f)},
        {"frequency 0.8, presence 1", mk(1.f, 0, 1.f, 0.f, 1.f, 0.8f, 1.f), mk(1.f, 0, 1.f, 0.f, 1.f, 0.8f, 0.f)},
    };
    const int draws = 24000;
    for (const Case& c : cases) {
      CAPTURE(c.name);
      const std::vector<int> counts = draw_many(lg, c.p, hist, 3, draws);
      const Fit good = fit(counts, reference(lg, c.p, hist, 3), draws);
      CHECK_MESSAGE(good.ok(), std::string(c.name), ": chi2 ", good.chi2, " (df ", good.df, ", limit ", good.limit(), "), ",
                    good.outside, " draws outside the kept set");
      const Fit bad = fit(counts, reference(lg, c.neighbour, hist, 3), draws);
      CHECK_MESSAGE(!bad.ok(), std::string(c.name), ": the neighbouring filter also passes (chi2 ", bad.chi2, ")");
    }
  }

  TEST_CASE("top-p over a wide vocabulary: the lazily sorted head gives the same set as a full sort") {
    const std::vector<float> lg = random_logits(5000, 3, 0.3f);  // flat: top-p 0.95 keeps thousands
    SamplingParams p;
    p.temperature = 1.f;
    p.top_p = 0.95f;
    const std::vector<double> want = reference(lg, p, {}, 0);
    const int kept = static_cast<int>(std::count_if(want.begin(), want.end(), [](double v) { return v > 0; }));
    CHECK(kept > 1000);
    std::vector<float> scratch;
    int outside = 0;
    for (int k = 0; k < 3000; k++) {
      p.seed = static_cast<uint64_t>(k);
      const tppp::Draw d = tppp::sample_row(lg.data(), 5000, p, {}, 5, &scratch);
      if (want[static_cast<size_t>(d.id)] <= 0) outside++;
    }
    CHECK(outside == 0);
  }

  TEST_CASE("greedy: argmax with the smallest id on ties, penalties applied; raw logprobs; bad params named") {
    std::vector<float> lg = {0.5f, 2.f, -1.f, 2.f, 1.9f};
    SamplingParams p;
    p.logprobs = 1;
    p.top_logprobs = 3;
    std::vector<float> scratch;
    tppp::Draw d = tppp::sample_row(lg.data(), 5, p, {}, 0, &scratch);
    CHECK(d.id == 1);
    double z = 0;
    for (float v : lg) z += std::exp(static_cast<double>(v));
    CHECK(std::fabs(d.logprob - (2.0 - std::log(z))) < 1e-6);
    REQUIRE(d.top_ids.size() == 3);
    CHECK(d.top_ids == std::vector<int32_t>{1, 3, 4});
    CHECK(std::fabs(d.top_logprobs[2] - (1.9 - std::log(z))) < 1e-6);
    const std::vector<int32_t> hist = {1, 3};  // both 2.0s penalised: 4 wins
    p.repetition_penalty = 1.2f;
    d = tppp::sample_row(lg.data(), 5, p, tppp::TokenHistory{hist.data(), 2, 0}, 2, &scratch);
    CHECK(d.id == 4);
    CHECK(std::fabs(d.logprob - (1.9 - std::log(z))) < 1e-6);  // raw, before the penalty
    struct Bad {
      const char* field;
      SamplingParams p;
    };
    SamplingParams b0, b1, b2, b3, b4, b5;
    b0.temperature = -1;
    b1.top_p = 0;
    b2.min_p = 1.5f;
    b3.top_k = -2;
    b4.repetition_penalty = 0;
    b5.top_logprobs = 21;
    for (const Bad& b : {Bad{"temperature", b0}, Bad{"top_p", b1}, Bad{"min_p", b2}, Bad{"top_k", b3},
                         Bad{"repetition_penalty", b4}, Bad{"top_logprobs", b5}}) {
      try {
        tppp::check_sampling(b.p, "submit row 3");
        FAIL("accepted a bad ", b.field);
      } catch (const tppp::Error& e) {
        CHECK(e.status() == TPPP_ERR_INVALID_ARGUMENT);
        CHECK_MESSAGE(std::string(e.what()).find(b.field) != std::string::npos, e.what());
        CHECK(std::string(e.what()).find("submit row 3") != std::string::npos);
      }
    }
  }

  TEST_CASE("the vocabulary split over ranks: each slice's top-k, merged, draws what sample_row draws") {
    const int V = 1000;
    const std::vector<float> lg = random_logits(V, 21, 2.f);
    const std::vector<int32_t> hist = {4, 900, 900, 17, 333, 501, 4};
    std::vector<float> scratch;
    int same = 0, total = 0;
    for (int tp : {2, 3, 4}) {
      const int per = (V + tp - 1) / tp;
      for (int k : {1, 5, 50}) {
        SamplingParams p;
        p.temperature = 0.7f;
        p.top_k = k;
        p.top_p = 0.9f;
        p.min_p = 0.02f;
        p.repetition_penalty = 1.2f;
        p.frequency_penalty = 0.3f;
        for (int64_t pos = 0; pos < 40; pos++) {
          p.seed = static_cast<uint64_t>(pos * 7 + k);
          const tppp::TokenHistory h{hist.data(), static_cast<int64_t>(hist.size()), 2};
          const int32_t want = tppp::sample_row(lg.data(), V, p, h, pos, &scratch).id;
          std::vector<tppp::Cand> all, c;
          for (int r = 0; r < tp; r++) {  // what each rank does with its slice
            const int64_t c0 = static_cast<int64_t>(r) * per, valid = std::max<int64_t>(0, std::min<int64_t>(per, V - c0));
            std::vector<float> slice(lg.begin() + c0, lg.begin() + c0 + valid);
            tppp::penalize(slice.data(), valid, c0, p, h);
            tppp::top_k_cands(slice.data(), valid, c0, k, true, &c);
            CHECK(c.size() <= static_cast<size_t>(k));
            all.insert(all.end(), c.begin(), c.end());
          }
          std::reverse(all.begin(), all.end());  // the order does not matter
          same += tppp::draw_cands(&all, p, pos) == want;
          total++;
        }
      }
    }
    CHECK_MESSAGE(same == total, same, " of ", total, " draws equal");
  }

  TEST_CASE("a draw depends on (seed, position) and the logits only") {
    const std::vector<float> lg = random_logits(200, 5, 1.f);
    SamplingParams p;
    p.temperature = 1.f;
    p.seed = 99;
    std::vector<float> s1, s2;
    std::vector<int32_t> a, b;
    for (int pos = 0; pos < 200; pos++) {
      a.push_back(tppp::sample_row(lg.data(), 200, p, {}, pos, &s1).id);
      b.push_back(tppp::sample_row(lg.data(), 200, p, {}, pos, &s2).id);
    }
    CHECK(a == b);
    p.seed = 100;
    std::vector<int32_t> c;
    for (int pos = 0; pos < 200; pos++) c.push_back(tppp::sample_row(lg.data(), 200, p, {}, pos, &s1).id);
    CHECK(a != c);
  }
}
