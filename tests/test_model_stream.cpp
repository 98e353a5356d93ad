// Generation streaming micro-batches through the stages (src/model/
// generate.cpp) and follow mode (src/model/follow.cpp), over real
// processes against transformers' tokens and logits: every grouping and
// prompt chunk size gives the same tokens; a cache that fills mid-way fails
// alike everywhere and gives every page back; only the driver calls in
// follow mode, and followers end on stop, on idleness and on a dead driver.
#include <doctest/doctest.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "c_api.h"
#include "harness.hpp"
#include "model_util.hpp"

using namespace mt;

namespace {

struct Gen {
  std::vector<int32_t> tokens, counts;
  std::vector<float> first;
  std::vector<std::pair<int32_t, int32_t>> seen;  // on_token calls
};

void on_token(void* user, int32_t prompt, int32_t token) {
  static_cast<Gen*>(user)->seen.emplace_back(prompt, token);
}

tppp_status generate(tppp_model_t m, const Ref& ref, int32_t max_new, int32_t mbs, int32_t chunk, Gen* g) {
  std::vector<const int32_t*> ptr;
  std::vector<int32_t> len;
  for (const auto& p : ref.prompts) {
    ptr.push_back(p.data());
    len.push_back(static_cast<int32_t>(p.size()));
  }
  const size_t np = ref.prompts.size();
  g->tokens.assign(np * static_cast<size_t>(max_new), -1);
  g->counts.assign(np, -1);
  g->first.assign(np * static_cast<size_t>(ref.vocab), NAN);
  g->seen.clear();
  tppp_generate_params gp;
  tppp_generate_params_init(&gp, sizeof gp);
  gp.max_new = max_new;
  gp.microbatches = mbs;
  gp.prefill_chunk = chunk;
  gp.on_token = on_token;
  gp.user = g;
  return tppp_model_generate(m, static_cast<int32_t>(np), ptr.data(), len.data(), &gp, g->tokens.data(),
                             g->counts.data(), g->first.data());
}

// On the driver: the first max_new of transformers' tokens, each prompt's
// last-position logits, and on_token in order per prompt.
int check_gen(const Ref& ref, const Gen& g, int32_t max_new, const char* what) {
  for (size_t i = 0; i < ref.prompts.size(); i++) {
    const std::vector<int32_t> want(ref.tokens[i].begin(), ref.tokens[i].begin() + max_new);
    const std::vector<int32_t> got(g.tokens.begin() + static_cast<long>(i) * max_new,
                                   g.tokens.begin() + static_cast<long>(i) * max_new + g.counts[i]);
    RANK_CHECK(got == want, "%s: prompt %zu: %d tokens, not transformers'", what, i, g.counts[i]);
    std::vector<int32_t> seen;
    for (const auto& s : g.seen)
      if (s.first == static_cast<int32_t>(i)) seen.push_back(s.second);
    RANK_CHECK(seen == want, "%s: prompt %zu: on_token saw %zu tokens, not in order", what, i, seen.size());
    const float* last = ref.logits.data() + ref.offsets[i] + (ref.prompts[i].size() - 1) * static_cast<size_t>(ref.vocab);
    const double e = row_err(g.first.data() + i * static_cast<size_t>(ref.vocab), last, ref.vocab);
    RANK_CHECK(e < 1e-4, "%s: prompt %zu: first logits relative error %.3g", what, i, e);
  }
  return 0;
}

int free_pages(tppp_model_t m) {
  tppp_model_info info;
  info.struct_size = sizeof info;
  if (tppp_model_get_info(m, &info) != TPPP_OK) return -1;
  return info.free_pages;
}

}  // namespace

TEST_SUITE("model_stream") {
  TEST_CASE("generation: transformers' tokens for every grouping of sequences and prompt chunk size") {
    const Ref ref = load_ref("qwen2");  // 4 layers, prompts of 5, 11 and 2 tokens
    for (int tp : {1, 2}) {
      const int pp = tp == 1 ? 3 : 2;
      CAPTURE(tp);
      auto codes = th::run_ranks(tp * pp, 120, [&](int rank, const tppp_unique_id& id) {
        Open o;
        if (open_model(id, rank, tp, pp, "qwen2", &o)) return 1;
        const int pages = free_pages(o.m);
        struct Case {
          int32_t mbs, chunk;
        };
        // microbatches 0 = one per stage; chunk 1 = a token per micro-batch; 7 splits the 11-token prompt.
        for (const Case c : {Case{0, 0}, Case{1, 1}, Case{2, 4}, Case{3, 3}, Case{5, 7}}) {
          Gen g;
          const std::string what = "microbatches " + std::to_string(c.mbs) + ", chunk " + std::to_string(c.chunk);
          RANK_OK(generate(o.m, ref, 24, c.mbs, c.chunk, &g));
          if (rank == 0 && check_gen(ref, g, 24, what.c_str())) return 1;
          if (rank != 0) RANK_CHECK(g.seen.empty(), "%s: on_token called off the driver", what.c_str());
          RANK_CHECK(free_pages(o.m) == pages, "%s: %d pages free after, %d before", what.c_str(), free_pages(o.m), pages);
        }
        tppp_model_stats st;
        st.struct_size = sizeof st;
        RANK_OK(tppp_model_get_stats(o.m, &st));
        RANK_CHECK(st.busy_ms > 0 && st.wall_ms >= st.busy_ms, "stats: busy %.3f, wall %.3f", st.busy_ms, st.wall_ms);
        return 0;
      });
      CHECK_MESSAGE(th::all_zero(codes), th::codes_str(codes));
    }
  }

  TEST_CASE("a cache that fills during generation: the same status on every rank, every page back, usable after") {
    const Ref ref = load_ref("qwen2");
    auto codes = th::run_ranks(2, 120, [&](int rank, const tppp_unique_id& id) {
      Open o;
      // 10 pages of 4 tokens: the prompts take 6, 24 new tokens each need 18 more.
      if (open_model(id, rank, 1, 2, "qwen2", &o, 40, 4)) return 1;
      Gen g;
      const tppp_status s = generate(o.m, ref, 24, 0, 4, &g);
      const std::string msg = tppp_last_error();
      RANK_CHECK(s == TPPP_ERR_OUT_OF_MEMORY, "%s: %s", tppp_status_string(s), msg.c_str());
      RANK_CHECK(rank == 0 ? msg.find("pages") != std::string::npos : msg.find("stage 0 (rank 0) stopped") != std::string::npos,
                 "rank %d: %s", rank, msg.c_str());
      RANK_CHECK(free_pages(o.m) == 10, "%d of 10 pages free after the failure", free_pages(o.m));
      RANK_OK(generate(o.m, ref, 3, 0, 4, &g));
      if (rank == 0 && check_gen(ref, g, 3, "after the failure")) return 1;
      return 0;
    });
    CHECK_MESSAGE(th::all_zero(codes), th::codes_str(codes));
  }

  TEST_CASE("follow mode: only the driver calls; tokens, logits, refusals and a full cache as in every-rank mode") {
    const Ref ref = load_ref("qwen2");
    auto codes = th::run_ranks(4, 120, [&](int rank, const tppp_unique_id& id) {
      Open o;
      if (open_model(id, rank, 2, 2, "qwen2", &o, 40, 4, 30000, true)) return 1;
      if (rank != 0) {
        tppp_batch b{0, nullptr, nullptr, nullptr, nullptr};
        tppp_status s = tppp_model_forward(o.m, &b, TPPP_OUT_IDS, nullptr, nullptr, nullptr);
        RANK_CHECK(s == TPPP_ERR_INVALID_USAGE && std::string(tppp_last_error()).find("tppp_model_follow") !=
                                                      std::string::npos,
                   "forward on a follower: %s: %s", tppp_status_string(s), tppp_last_error());
        RANK_CHECK(tppp_model_stop(o.m) == TPPP_ERR_INVALID_USAGE, "stop on a follower");
        RANK_CHECK(tppp_model_follow(o.m, -2) == TPPP_ERR_INVALID_ARGUMENT, "idle timeout -2");
        const tppp_status f = tppp_model_follow(o.m, 60000);
        RANK_CHECK(f == TPPP_OK, "follow: %s: %s", tppp_status_string(f), tppp_last_error());
        RANK_CHECK(free_pages(o.m) == 10, "follower: %d of 10 pages free at the end", free_pages(o.m));
        return 0;
      }
      RANK_CHECK(tppp_model_follow(o.m, 1000) == TPPP_ERR_INVALID_USAGE, "follow on the driver");
      Gen g;
      RANK_OK(generate(o.m, ref, 3, 0, 4, &g));
      if (check_gen(ref, g, 3, "follow mode")) return 1;
      // A cache too small for 24 tokens each: refused mid-way, on every rank; the followers go on.
      tppp_status s = generate(o.m, ref, 24, 0, 4, &g);
      RANK_CHECK(s == TPPP_ERR_OUT_OF_MEMORY, "%s: %s", tppp_status_string(s), tppp_last_error());
      Batch bad;  // a gap: refused on the driver alone, before any traffic
      bad.add(ref.prompts[0][0], 3, 0);
      tppp_batch bv = bad.view();
      s = tppp_model_forward(o.m, &bv, TPPP_OUT_IDS, nullptr, nullptr, nullptr);
      RANK_CHECK(s == TPPP_ERR_INVALID_ARGUMENT && std::string(tppp_last_error()).find("a gap") != std::string::npos,
                 "%s: %s", tppp_status_string(s), tppp_last_error());
      Batch b;
      std::vector<int> w;
      for (int k = 0; k < 5; k++) b.add(ref.prompts[0][static_cast<size_t>(k)], k, 7), w.push_back(0);
      if (run_check(o.m, rank, b, w, ref, 1e-4)) return 1;
      RANK_OK(tppp_model_remove_seq(o.m, 7));
      RANK_CHECK(tppp_model_remove_seq(o.m, 64) == TPPP_ERR_INVALID_ARGUMENT, "remove 64");
      RANK_OK(generate(o.m, ref, 2, 1, 0, &g));
      if (check_gen(ref, g, 2, "follow mode, after")) return 1;
      RANK_OK(tppp_model_stop(o.m));
      RANK_OK(tppp_model_stop(o.m));  // once is enough; again is fine
      RANK_CHECK(tppp_model_forward(o.m, &bv, TPPP_OUT_IDS, nullptr, nullptr, nullptr) == TPPP_ERR_INVALID_USAGE,
                 "forward after stop");
      return 0;
    });
    CHECK_MESSAGE(th::all_zero(codes), th::codes_str(codes));
  }

  TEST_CASE("follow mode: an idle follower times out; a dead driver ends following with REMOTE in time") {
    const int timeout_ms = 3000;
    auto codes = th::run_ranks(2, 60, [&](int rank, const tppp_unique_id& id) {
      Open o;
      if (open_model(id, rank, 1, 2, "llama", &o, 4096, 16, timeout_ms, true)) return 1;
      if (rank == 0) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1500));
        _exit(9);
      }
      auto t0 = Clock::now();
      tppp_status s = tppp_model_follow(o.m, 300);
      double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
      RANK_CHECK(s == TPPP_ERR_TIMEOUT && ms >= 300 && ms < 1300, "idle: %s after %.0f ms: %s", tppp_status_string(s),
                 ms, tppp_last_error());
      t0 = Clock::now();
      s = tppp_model_follow(o.m, -1);
      ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
      RANK_CHECK(s == TPPP_ERR_REMOTE && ms < 1500 + timeout_ms + 1000, "dead driver: %s after %.0f ms: %s",
                 tppp_status_string(s), ms, tppp_last_error());
      return 0;
    });
    CHECK_MESSAGE(codes[0] == 9, th::codes_str(codes));
    CHECK_MESSAGE(codes[1] == 0, th::codes_str(codes));
  }
}
