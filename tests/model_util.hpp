// Shared by the model tests: transformers' reference (fixtures made by
// tests/fixtures/make_model_fixtures.py), opening a model on a rank, and a
// batch whose logits are checked against the reference on the driver.
#pragma once
#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "c_api.h"
#include "harness.hpp"

namespace mt {

using Clock = std::chrono::steady_clock;

struct Ref {
  std::vector<std::vector<int32_t>> prompts, tokens;
  std::vector<size_t> offsets;
  std::vector<float> logits;  // per prompt [len, vocab]
  int64_t vocab = 0;
  bool bf16 = false;
};

inline Ref load_ref(const std::string& name) {
  const std::string d = std::string(TPPP_FIXTURES) + "/models/" + name;
  std::ifstream f(d + "/reference.json");
  nlohmann::json j = nlohmann::json::parse(f);
  Ref r;
  r.prompts = j["prompts"].get<std::vector<std::vector<int32_t>>>();
  r.tokens = j["tokens"].get<std::vector<std::vector<int32_t>>>();
  r.offsets = j["logits_offsets"].get<std::vector<size_t>>();
  r.vocab = j["vocab"].get<int64_t>();
  r.bf16 = j["dtype"].get<std::string>() == "bfloat16";
  std::ifstream b(d + "/logits.bin", std::ios::binary | std::ios::ate);
  r.logits.resize(static_cast<size_t>(b.tellg()) / 4);
  b.seekg(0);
  b.read(reinterpret_cast<char*>(r.logits.data()), static_cast<std::streamsize>(r.logits.size() * 4));
  return r;
}

inline std::string ckpt(const std::string& name) { return std::string(TPPP_FIXTURES) + "/models/" + name; }

// max |got - ref| / max |ref| over one row of logits.
inline double row_err(const float* got, const float* ref, int64_t v) {
  double num = 0, den = 0;
  for (int64_t i = 0; i < v; i++) {
    num = std::max(num, std::fabs(static_cast<double>(got[i]) - ref[i]));
    den = std::max(den, std::fabs(static_cast<double>(ref[i])));
  }
  return num / den;
}

struct Open {
  tppp_group_t g = nullptr;
  tppp_model_t m = nullptr;
  ~Open() {
    tppp_model_destroy(m);
    tppp_group_destroy(g);
  }
};

inline int open_model(const tppp_unique_id& id, int rank, int tp, int pp, const std::string& name, Open* o,
                      int64_t kv_tokens = 4096, int32_t page_size = 16, int timeout_ms = 30000, bool follow = false,
                      int device = TPPP_DEVICE_CPU) {
  tppp_group_params gp = th::params(tp, pp, timeout_ms);
  gp.device = device;
  RANK_OK(tppp_group_create(&id, tp * pp, rank, &gp, &o->g));
  tppp_checkpoint_t c = nullptr;
  RANK_OK(tppp_checkpoint_open(ckpt(name).c_str(), &c));
  tppp_model_params mp;
  tppp_model_params_init(&mp, sizeof mp);
  mp.kv_tokens = kv_tokens;
  mp.page_size = page_size;
  mp.follow = follow ? 1 : 0;
  const tppp_status s = tppp_model_create(o->g, c, &mp, &o->m);
  tppp_checkpoint_close(c);
  RANK_OK(s);
  return 0;
}

// A batch under construction: every token wants logits.
struct Batch {
  std::vector<int32_t> tok, pos, seq;
  std::vector<int8_t> want;
  void add(int32_t t, int32_t p, int32_t s) {
    tok.push_back(t);
    pos.push_back(p);
    seq.push_back(s);
    want.push_back(1);
  }
  tppp_batch view() const {
    return tppp_batch{static_cast<int32_t>(tok.size()), tok.data(), pos.data(), seq.data(), want.data()};
  }
};

// Runs b; on the driver checks each token's logits against prompt
// owner[i]'s reference at its position.
inline int run_check(tppp_model_t m, int rank, const Batch& b, const std::vector<int>& owner, const Ref& ref, double tol) {
  std::vector<float> lg(b.tok.size() * static_cast<size_t>(ref.vocab), NAN);
  std::vector<int64_t> ids(b.tok.size(), -1);
  int32_t n = -1;
  tppp_batch v = b.view();
  RANK_OK(tppp_model_forward(m, &v, TPPP_OUT_LOGITS | TPPP_OUT_IDS, rank == 0 ? lg.data() : nullptr,
                             rank == 0 ? ids.data() : nullptr, &n));
  RANK_CHECK(n == static_cast<int32_t>(b.tok.size()), "n_out %d", n);
  if (rank != 0) return 0;
  for (size_t i = 0; i < b.tok.size(); i++) {
    const float* want = ref.logits.data() + ref.offsets[static_cast<size_t>(owner[i])] +
                        static_cast<size_t>(b.pos[i]) * static_cast<size_t>(ref.vocab);
    const double e = row_err(lg.data() + i * static_cast<size_t>(ref.vocab), want, ref.vocab);
    RANK_CHECK(e < tol, "token %zu (prompt %d, position %d): relative error %.3g >= %.3g", i, owner[i], b.pos[i], e,
               tol);
    int64_t best = 0;
    for (int64_t c = 1; c < ref.vocab; c++)
      if (lg[i * static_cast<size_t>(ref.vocab) + static_cast<size_t>(c)] >
          lg[i * static_cast<size_t>(ref.vocab) + static_cast<size_t>(best)])
        best = c;
    RANK_CHECK(ids[i] == best, "token %zu: id %lld, argmax of its logits %lld", i, static_cast<long long>(ids[i]),
               static_cast<long long>(best));
  }
  return 0;
}

}  // namespace mt
