// The model runtime: the KV book and config parsing as plain data, then
// whole models over real processes against transformers' own logits
// (tests/fixtures/make_model_fixtures.py): every position of each prompt,
// prefill mixed with decode in one batch, sequence removal and reuse, a full
// cache, bad batches refused on every rank with nothing written, and a rank
// killed during generate.
#include <doctest/doctest.h>

#include <chrono>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "c_api.h"
#include "core/error.hpp"
#include "harness.hpp"
#include "model_util.hpp"
#include "model/kv_cache.hpp"
#include "model/model_config.hpp"

using namespace mt;


TEST_SUITE("model") {
  TEST_CASE("KV book: positions continue each sequence, pages as needed, nothing changes on a refusal") {
    tppp::KvBook k(4, 4, 3);  // 4 pages of 4 tokens, sequences 0..2
    int32_t tok[6] = {1, 2, 3, 4, 5, 6}, pos[6] = {0, 1, 2, 3, 4, 0}, seq[6] = {0, 0, 0, 0, 0, 1};
    tppp::BatchView b{6, tok, pos, seq, nullptr};
    tppp::KvPlan p = k.plan(b, 10);
    CHECK(p.pages_taken == 3);  // seq 0: 5 tokens -> 2 pages, seq 1: 1 page
    CHECK(p.wanted == std::vector<int32_t>{5});
    CHECK(p.kv_len[4] == 5);
    k.commit(p);
    CHECK(k.length(0) == 5);
    CHECK(k.free_pages() == 1);
    auto refused = [&](int32_t t, int32_t ps, int32_t s, int32_t vocab, tppp_status want, const char* says) {
      tppp::BatchView bad{1, &t, &ps, &s, nullptr};
      try {
        k.plan(bad, vocab);
        FAIL("accepted");
      } catch (const tppp::Error& e) {
        CHECK(e.status() == want);
        CHECK_MESSAGE(std::string(e.what()).find(says) != std::string::npos, e.what());
      }
    };
    refused(1, 6, 0, 10, TPPP_ERR_INVALID_ARGUMENT, "a gap");
    refused(1, 3, 0, 10, TPPP_ERR_INVALID_ARGUMENT, "a rewrite");
    refused(1, 0, 3, 10, TPPP_ERR_INVALID_ARGUMENT, "sequence id 3");
    refused(10, 1, 1, 10, TPPP_ERR_INVALID_ARGUMENT, "token id 10");
    int32_t t8[8] = {0}, p8[8], s8[8];
    for (int i = 0; i < 8; i++) p8[i] = i, s8[i] = 2;
    tppp::BatchView big{8, t8, p8, s8, nullptr};
    try {
      k.plan(big, 10);
      FAIL("a full cache accepted");
    } catch (const tppp::Error& e) {
      CHECK(e.status() == TPPP_ERR_OUT_OF_MEMORY);
      CHECK_MESSAGE(std::string(e.what()).find("needs 2 more pages") != std::string::npos, e.what());
    }
    CHECK(k.length(0) == 5);
    CHECK(k.free_pages() == 1);
    k.remove(0);
    CHECK(k.free_pages() == 3);
    CHECK(k.length(0) == 0);
    k.commit(k.plan(big, 10));  // now it fits
    CHECK(k.length(2) == 8);
  }

  TEST_CASE("attention runs: consecutive tokens of a sequence at consecutive positions, pages cut to each run") {
    tppp::KvBook k(10, 2, 3);  // pages of 2 tokens
    int32_t t0[5] = {1, 1, 1, 1, 1}, p0[5] = {0, 1, 2, 0, 1}, s0[5] = {0, 0, 0, 2, 2};
    k.commit(k.plan(tppp::BatchView{5, t0, p0, s0, nullptr}, 10));  // seq 0 holds 3 tokens, seq 2 holds 2
    // seq 0 continues (2 tokens), seq 1 starts, seq 2 decodes, seq 1 again (not adjacent: its own run)
    int32_t tok[5] = {1, 2, 3, 4, 5}, pos[5] = {3, 4, 0, 2, 1}, seq[5] = {0, 0, 1, 2, 1};
    tppp::KvPlan p = k.plan(tppp::BatchView{5, tok, pos, seq, nullptr}, 10);
    tppp::AttnRuns r = tppp::attn_runs(p, 5, 2);
    CHECK(r.qo_indptr == std::vector<int32_t>{0, 2, 3, 4, 5});
    CHECK(r.kv_indptr == std::vector<int32_t>{0, 3, 4, 6, 7});
    CHECK(r.kv_last == std::vector<int32_t>{1, 1, 1, 2});
    CHECK_FALSE(r.decode);
    auto table = [&](int t, int n) {
      const auto b = p.pages.begin() + p.page_off[static_cast<size_t>(t)];
      return std::vector<int32_t>(b, b + n);
    };
    std::vector<int32_t> want = table(0, 3), more = table(2, 1);
    want.insert(want.end(), more.begin(), more.end());
    more = table(3, 2);
    want.insert(want.end(), more.begin(), more.end());
    more = table(4, 1);
    want.insert(want.end(), more.begin(), more.end());
    CHECK(r.kv_indices == want);
    k.commit(p);
    int32_t dt[2] = {1, 1}, dp[2] = {5, 3}, ds[2] = {0, 2};
    tppp::KvPlan d = k.plan(tppp::BatchView{2, dt, dp, ds, nullptr}, 10);
    tppp::AttnRuns dr = tppp::attn_runs(d, 2, 2);
    CHECK(dr.decode);
    CHECK(dr.qo_indptr == std::vector<int32_t>{0, 1, 2});
    CHECK(dr.kv_last == std::vector<int32_t>{2, 2});  // 6 and 4 tokens: full last pages
    CHECK(dr.kv_indptr == std::vector<int32_t>{0, 3, 5});
  }

  TEST_CASE("graph padding: extra rows write and read only the scratch page, one run each") {
    tppp::KvBook k(6, 4, 3);
    int32_t t0[5] = {1, 1, 1, 1, 1}, p0[5] = {0, 1, 2, 3, 4}, s0[5] = {0, 0, 0, 0, 0};
    k.commit(k.plan(tppp::BatchView{5, t0, p0, s0, nullptr}, 10));
    int32_t tok[2] = {1, 2}, pos[2] = {5, 0}, seq[2] = {0, 1};
    const tppp::KvPlan p = k.plan(tppp::BatchView{2, tok, pos, seq, nullptr}, 10);
    const int32_t scratch = k.num_pages();  // the page past the book's
    const tppp::KvPlan q = tppp::pad_rows(p, 4, scratch, 4);
    REQUIRE(q.slot.size() == 4);
    CHECK(std::vector<int32_t>(q.slot.begin(), q.slot.begin() + 2) == p.slot);
    CHECK(q.slot[2] == scratch * 4);
    CHECK(q.slot[3] == scratch * 4);
    CHECK(q.kv_len[2] == 1);
    CHECK(q.pages[static_cast<size_t>(q.page_off[3])] == scratch);
    CHECK(q.wanted == p.wanted);
    const tppp::AttnRuns r = tppp::attn_runs(q, 4, 4);
    CHECK(r.decode);
    CHECK(r.runs() == 4);
    CHECK(r.kv_indices.back() == scratch);
    CHECK(r.kv_last == std::vector<int32_t>{2, 1, 1, 1});  // seq 0 holds 6 tokens: its second page has 2
    for (int32_t pg : std::vector<int32_t>(r.kv_indices.begin(), r.kv_indices.begin() + r.kv_indptr[2]))
      CHECK(pg != scratch);  // real rows never see the scratch page
  }

  TEST_CASE("config: both RoPE styles, llama3 frequencies, and refusals naming the field") {
    const std::string base =
        R"("hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 96,
           "num_hidden_layers": 2, "vocab_size": 100)";
    const tppp::ModelSpec a = tppp::parse_model_spec(
        "{\"architectures\": [\"LlamaForCausalLM\"], " + base +
            R"(, "rope_theta": 500000.0, "rope_scaling": {"rope_type": "llama3", "factor": 8.0,
               "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 64}})",
        "a");
    const tppp::ModelSpec b = tppp::parse_model_spec(
        "{\"architectures\": [\"LlamaForCausalLM\"], " + base +
            R"(, "rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
               "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 64}})",
        "b");
    CHECK(a.rope.llama3);
    CHECK(b.rope.llama3);
    CHECK(tppp::rope_inv_freq(a.rope, 16) == tppp::rope_inv_freq(b.rope, 16));
    // Llama 3 scaling in float64: low frequencies / factor, high kept, the band between smoothed.
    const std::vector<float> f = tppp::rope_inv_freq(a.rope, 16);
    for (int i = 0; i < 8; i++) {
      const double x = 1.0 / std::pow(500000.0, 2.0 * i / 16), wl = 2 * M_PI / x;
      double want = wl < 16 ? x : wl > 64 ? x / 8 : ((1 - (64 / wl - 1) / 3) / 8 + (64 / wl - 1) / 3) * x;
      CHECK(std::fabs(f[static_cast<size_t>(i)] - want) <= 1e-5 * want);
    }
    auto refused = [&](const std::string& extra, const char* says) {
      try {
        tppp::parse_model_spec("{" + base + ", " + extra + "}", "config.json");
        FAIL("accepted: " << extra);
      } catch (const tppp::Error& e) {
        CHECK(e.status() == TPPP_ERR_NOT_SUPPORTED);
        CHECK_MESSAGE(std::string(e.what()).find(says) != std::string::npos, e.what());
      }
    };
    refused(R"("architectures": ["GemmaForCausalLM"])", "GemmaForCausalLM");
    refused(R"("architectures": ["Qwen2ForCausalLM"], "rope_scaling": {"rope_type": "yarn", "factor": 4.0})", "yarn");
    refused(R"("architectures": ["Qwen2ForCausalLM"], "use_sliding_window": true)", "use_sliding_window");
    refused(R"("architectures": ["MistralForCausalLM"], "sliding_window": 32, "max_position_embeddings": 128)",
            "sliding_window");
    refused(R"("architectures": ["Qwen2ForCausalLM"], "num_experts": 8)", "num_experts");
    refused(R"("architectures": ["LlamaForCausalLM"], "mlp_bias": true)", "mlp_bias");
    refused(R"("architectures": ["LlamaForCausalLM"], "hidden_act": "gelu")", "hidden_act");
    const tppp::ModelSpec q3 = tppp::parse_model_spec("{\"architectures\": [\"Qwen3ForCausalLM\"], " + base + "}", "c");
    CHECK(q3.qk_norm);
    CHECK(!q3.qkv_bias);
    const tppp::ModelSpec q2 = tppp::parse_model_spec("{\"model_type\": \"qwen2\", " + base + "}", "d");
    CHECK(q2.qkv_bias);
    CHECK(!q2.o_bias);
  }

  TEST_CASE("logits of every prompt position match transformers, per model and grid") {
    struct Case {
      const char* model;
      int tp, pp;
    };
    const Case cases[] = {{"llama", 1, 1}, {"llama", 4, 1}, {"llama", 2, 2}, {"llama", 1, 3}, {"qwen2", 1, 1},
                          {"qwen2", 2, 1}, {"qwen2", 2, 2}, {"qwen2", 1, 3}, {"qwen3", 1, 1}, {"qwen3", 2, 2},
                          {"qwen3", 4, 1}, {"qwen3", 2, 3}, {"qwen2_bf16", 1, 1}, {"qwen2_bf16", 2, 2},
                          {"llama_hd64_bf16", 1, 1}, {"llama_hd64_bf16", 2, 1}};
    for (const Case& c : cases) {
      CAPTURE(c.model);
      CAPTURE(c.tp);
      CAPTURE(c.pp);
      const Ref ref = load_ref(c.model);
      auto codes = th::run_ranks(c.tp * c.pp, 120, [&](int rank, const tppp_unique_id& id) {
        Open o;
        if (open_model(id, rank, c.tp, c.pp, c.model, &o)) return 1;
        for (size_t p = 0; p < ref.prompts.size(); p++) {
          Batch b;
          std::vector<int> owner;
          for (size_t k = 0; k < ref.prompts[p].size(); k++) {
            b.add(ref.prompts[p][k], static_cast<int32_t>(k), static_cast<int32_t>(p));
            owner.push_back(static_cast<int>(p));
          }
          if (run_check(o.m, rank, b, owner, ref, ref.bf16 ? 3e-2 : 1e-4)) return 1;
        }
        return 0;
      });
      CHECK_MESSAGE(th::all_zero(codes), th::codes_str(codes));
    }
  }

  TEST_CASE("continuous batching: prefill mixed with decode, removal and reuse of an id, a full cache") {
    const Ref ref = load_ref("qwen2");
    auto codes = th::run_ranks(4, 120, [&](int rank, const tppp_unique_id& id) {
      Open o;
      // 10 pages of 4 tokens: prompts of 5, 11 and 2 tokens take 2 + 3 + 1.
      if (open_model(id, rank, 2, 2, "qwen2", &o, 40, 4)) return 1;
      const auto& P = ref.prompts;
      Batch b1;  // prompt 1's first 6 tokens interleaved with prompt 0's first 3
      std::vector<int> w1;
      for (int k = 0; k < 6; k++) {
        b1.add(P[1][static_cast<size_t>(k)], k, 1);
        w1.push_back(1);
        if (k < 3) {
          b1.add(P[0][static_cast<size_t>(k)], k, 0);
          w1.push_back(0);
        }
      }
      if (run_check(o.m, rank, b1, w1, ref, 1e-4)) return 1;
      Batch b2;  // one token of prompt 0 (decode-like), the rest of prompt 1, all of prompt 2
      std::vector<int> w2;
      b2.add(P[0][3], 3, 0);
      w2.push_back(0);
      for (int k = 6; k < 11; k++) b2.add(P[1][static_cast<size_t>(k)], k, 1), w2.push_back(1);
      for (int k = 0; k < 2; k++) b2.add(P[2][static_cast<size_t>(k)], k, 2), w2.push_back(2);
      b2.add(P[0][4], 4, 0);
      w2.push_back(0);
      if (run_check(o.m, rank, b2, w2, ref, 1e-4)) return 1;
      // The cache: 2 + 3 + 1 pages of 10 used. Prompt 1 again as a new sequence would need 3 more of 4 free: fine;
      // 20 tokens (5 pages) are refused, naming the demand, and change nothing.
      tppp_model_info info;
      info.struct_size = sizeof info;
      RANK_OK(tppp_model_get_info(o.m, &info));
      RANK_CHECK(info.free_pages == 4, "free pages %d", info.free_pages);
      Batch big;
      for (int k = 0; k < 20; k++) big.add(1, k, 3);
      tppp_batch bv = big.view();
      tppp_status s = tppp_model_forward(o.m, &bv, TPPP_OUT_IDS, nullptr, nullptr, nullptr);
      RANK_CHECK(s == TPPP_ERR_OUT_OF_MEMORY && std::string(tppp_last_error()).find("needs 5 more pages") !=
                                                    std::string::npos,
                 "%s: %s", tppp_status_string(s), tppp_last_error());
      RANK_OK(tppp_model_get_info(o.m, &info));
      RANK_CHECK(info.free_pages == 4, "free pages %d after the refusal", info.free_pages);
      // Remove sequence 0 and reuse its id for prompt 2.
      RANK_OK(tppp_model_remove_seq(o.m, 0));
      Batch b3;
      std::vector<int> w3;
      for (int k = 0; k < 2; k++) b3.add(P[2][static_cast<size_t>(k)], k, 0), w3.push_back(2);
      if (run_check(o.m, rank, b3, w3, ref, 1e-4)) return 1;
      return 0;
    });
    CHECK_MESSAGE(th::all_zero(codes), th::codes_str(codes));
  }

  TEST_CASE("bad batches: the same refusal on every rank, naming token and sequence; nothing written") {
    const Ref ref = load_ref("llama");
    auto codes = th::run_ranks(2, 60, [&](int rank, const tppp_unique_id& id) {
      Open o;
      if (open_model(id, rank, 1, 2, "llama", &o)) return 1;
      Batch ok;
      std::vector<int> w;
      for (int k = 0; k < 3; k++) ok.add(ref.prompts[0][static_cast<size_t>(k)], k, 0), w.push_back(0);
      if (run_check(o.m, rank, ok, w, ref, 1e-4)) return 1;
      struct Bad {
        int32_t tok, pos, seq;
        const char* says;
      };
      const Bad bad[] = {{5, 7, 0, "a gap"}, {5, 1, 0, "a rewrite"}, {5, 0, 64, "sequence id 64"},
                         {250, 3, 0, "token id 250"}, {-1, 3, 0, "token id -1"}, {5, 0, -2, "sequence id -2"}};
      for (const Bad& x : bad) {
        Batch b;
        b.add(ref.prompts[0][3], 3, 0);  // a good token first: must not be written either
        b.add(x.tok, x.pos, x.seq);
        tppp_batch v = b.view();
        tppp_status s = tppp_model_forward(o.m, &v, TPPP_OUT_IDS, nullptr, nullptr, nullptr);
        RANK_CHECK(s == TPPP_ERR_INVALID_ARGUMENT && std::string(tppp_last_error()).find(x.says) != std::string::npos &&
                       std::string(tppp_last_error()).find("batch token 1") != std::string::npos,
                   "%s: %s: %s", x.says, tppp_status_string(s), tppp_last_error());
      }
      tppp_batch empty{0, nullptr, nullptr, nullptr, nullptr};
      RANK_CHECK(tppp_model_forward(o.m, &empty, TPPP_OUT_IDS, nullptr, nullptr, nullptr) == TPPP_ERR_INVALID_ARGUMENT,
                 "an empty batch: %s", tppp_last_error());
      RANK_CHECK(tppp_model_forward(o.m, nullptr, TPPP_OUT_IDS, nullptr, nullptr, nullptr) == TPPP_ERR_INVALID_ARGUMENT,
                 "a NULL batch");
      RANK_CHECK(tppp_model_forward(nullptr, &empty, TPPP_OUT_IDS, nullptr, nullptr, nullptr) == TPPP_ERR_INVALID_ARGUMENT,
                 "a NULL model");
      // The driver forgets its ids buffer: it alone fails, naming it, and nobody waits on it (the batch ran).
      Batch one;
      one.add(ref.prompts[0][3], 3, 0);
      tppp_batch ov = one.view();
      tppp_status s1 = tppp_model_forward(o.m, &ov, TPPP_OUT_IDS, nullptr, nullptr, nullptr);
      RANK_CHECK(rank == 0 ? s1 == TPPP_ERR_INVALID_ARGUMENT && std::string(tppp_last_error()).find("passed NULL") !=
                                                                    std::string::npos
                           : s1 == TPPP_OK,
                 "%s: %s", tppp_status_string(s1), tppp_last_error());
      // The sequence continues where those batches left it: position 4.
      Batch rest;
      std::vector<int> w2;
      rest.add(ref.prompts[0][4], 4, 0);
      w2.push_back(0);
      if (run_check(o.m, rank, rest, w2, ref, 1e-4)) return 1;
      return 0;
    });
    CHECK_MESSAGE(th::all_zero(codes), th::codes_str(codes));
  }

  TEST_CASE("a rank killed during generate: every survivor returns within the timeout with REMOTE or TIMEOUT") {
    const int timeout_ms = 3000;
    auto codes = th::run_ranks(4, 60, [&](int rank, const tppp_unique_id& id) {
      Open o;
      if (open_model(id, rank, 2, 2, "qwen2", &o, 4096, 16, timeout_ms)) return 1;
      if (rank == 3) {
        std::thread([] {
          std::this_thread::sleep_for(std::chrono::milliseconds(300));
          _exit(9);
        }).detach();
      }
      std::vector<int32_t> prompt(8, 7);
      const int32_t* pp = prompt.data();
      const int32_t len = 8;
      tppp_generate_params gp;
      tppp_generate_params_init(&gp, sizeof gp);
      gp.max_new = 1000000;  // far beyond the kill
      const auto t0 = Clock::now();
      tppp_status s = tppp_model_generate(o.m, 1, &pp, &len, &gp, nullptr, nullptr, nullptr);
      const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
      RANK_CHECK(s == TPPP_ERR_REMOTE || s == TPPP_ERR_TIMEOUT, "%s: %s", tppp_status_string(s), tppp_last_error());
      RANK_CHECK(ms < 300 + timeout_ms + 1000, "took %.0f ms", ms);
      return 0;
    });
    CHECK_MESSAGE(codes[3] == 9, th::codes_str(codes));
    CHECK_MESSAGE((codes[0] == 0 && codes[1] == 0 && codes[2] == 0), th::codes_str(codes));
  }
}
