// Steps in flight (src/model/steps.cpp), sampling on the last stage, EOS,
// cancel and seq_rm over real processes against transformers' tokens: a
// server-style host loop in follow mode (sequences join and leave between
// steps, P steps in flight); teacher-forced steps in every-rank mode; one
// seed gives the same sampled tokens on every TP x PP grid, with generate
// and with steps composed differently; EOS ends a prompt unless ignored;
// removing a sequence with a step in flight drops its rows and keeps the
// model usable; refusals name the sequence or field.
#include <doctest/doctest.h>

#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "c_api.h"
#include "harness.hpp"
#include "model_util.hpp"

using namespace mt;

namespace {

int info(tppp_model_t m, tppp_model_info* out) {
  out->struct_size = sizeof *out;
  return tppp_model_get_info(m, out) == TPPP_OK ? 0 : 1;
}

// A server's loop on the driver: every prompt joins as sequence 10 + i, its
// prefill a step of its own; each sequence's next token goes in the next
// step it can join (one step in flight per sequence); at most `depth`
// steps in flight. tokens[i]: max_new tokens per prompt.
int serve(tppp_model_t m, const std::vector<std::vector<int32_t>>& prompts, int32_t max_new, int depth,
          const tppp_sampling_params* sp, std::vector<std::vector<int32_t>>* tokens) {
  const size_t np = prompts.size();
  tokens->assign(np, {});
  std::vector<int> state(np, 0);  // 0 waiting, 1 in flight, 2 ready, 3 done
  std::vector<int32_t> len(np, 0), last(np, 0);
  int inflight = 0;
  size_t next_prompt = 0;
  for (;;) {
    // Compose: a new prompt if any, else every ready sequence's next token.
    Batch b;
    std::vector<const tppp_sampling_params*> sps;
    std::vector<size_t> who;
    if (next_prompt < np && inflight < depth) {
      const size_t i = next_prompt++;
      for (size_t k = 0; k < prompts[i].size(); k++) b.add(prompts[i][k], static_cast<int32_t>(k), 10 + static_cast<int32_t>(i));
      for (auto& w : b.want) w = 0;
      b.want.back() = 1;
      len[i] = static_cast<int32_t>(prompts[i].size());
      who.push_back(i);
    } else if (inflight < depth) {
      for (size_t i = 0; i < np; i++)
        if (state[i] == 2) {
          b.add(last[i], len[i]++, 10 + static_cast<int32_t>(i));
          who.push_back(i);
        }
    }
    if (!who.empty()) {
      for (size_t i : who) state[i] = 1;
      sps.assign(b.tok.size(), sp);
      tppp_step_params p;
      tppp_step_params_init(&p, sizeof p);
      p.sampling = sp ? sps.data() : nullptr;
      tppp_batch v = b.view();
      int64_t step = -1;
      RANK_OK(tppp_model_submit(m, &v, &p, &step));
      inflight++;
      continue;
    }
    if (inflight == 0) break;
    tppp_step_result r;
    r.struct_size = sizeof r;
    RANK_OK(tppp_model_wait(m, &r));
    inflight--;
    for (int32_t k = 0; k < r.n_out; k++) {
      const size_t i = static_cast<size_t>(r.seq_id[k] - 10);
      (*tokens)[i].push_back(r.token[k]);
      last[i] = r.token[k];
      state[i] = static_cast<int32_t>((*tokens)[i].size()) >= max_new ? 3 : 2;
      if (state[i] == 3) RANK_OK(tppp_model_remove_seq(m, r.seq_id[k]));
    }
  }
  return 0;
}

std::string tmp_path(const char* what) {
  return std::string("/tmp/tppp_steps_") + what + "_" + std::to_string(getpid());
}

void write_tokens(const std::string& path, const std::vector<std::vector<int32_t>>& t) {
  std::ofstream f(path);
  for (const auto& row : t) {
    for (int32_t x : row) f << x << ' ';
    f << '\n';
  }
}

std::string read_all(const std::string& path) {
  std::ifstream f(path);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

tppp_sampling_params sampler(float t, int k, float p, uint64_t seed) {
  tppp_sampling_params s;
  tppp_sampling_params_init(&s, sizeof s);
  s.temperature = t;
  s.top_k = k;
  s.top_p = p;
  s.seed = seed;
  return s;
}

}  // namespace

TEST_SUITE("model_steps") {
  TEST_CASE("follow mode: a server loop with steps in flight gives transformers' greedy tokens; pages all back") {
    const Ref ref = load_ref("qwen2");
    for (int pp : {1, 2, 3}) {
      const int tp = pp == 2 ? 2 : 1;
      CAPTURE(pp);
      auto codes = th::run_ranks(tp * pp, 120, [&](int rank, const tppp_unique_id& id) {
        Open o;
        if (open_model(id, rank, tp, pp, "qwen2", &o, 4096, 16, 30000, true)) return 1;
        tppp_model_info in;
        if (info(o.m, &in)) return 1;
        if (rank != 0) {
          RANK_OK(tppp_model_follow(o.m, 60000));
          return 0;
        }
        for (int depth : {1, pp, pp + 1}) {
          std::vector<std::vector<int32_t>> toks;
          if (serve(o.m, ref.prompts, 12, depth, nullptr, &toks)) return 1;
          for (size_t i = 0; i < ref.prompts.size(); i++)
            RANK_CHECK(toks[i] == std::vector<int32_t>(ref.tokens[i].begin(), ref.tokens[i].begin() + 12),
                       "depth %d: prompt %zu: not transformers' tokens", depth, i);
          tppp_model_info after;
          if (info(o.m, &after)) return 1;
          RANK_CHECK(after.free_pages == in.free_pages && after.steps_in_flight == 0, "depth %d: %d of %d pages free",
                     depth, after.free_pages, in.free_pages);
        }
        RANK_OK(tppp_model_stop(o.m));
        return 0;
      });
      CHECK_MESSAGE(th::all_zero(codes), th::codes_str(codes));
    }
  }

  TEST_CASE("every-rank mode: teacher-forced steps; a rank with other arguments fails every rank, named") {
    const Ref ref = load_ref("qwen2");
    auto codes = th::run_ranks(4, 120, [&](int rank, const tppp_unique_id& id) {
      Open o;
      if (open_model(id, rank, 2, 2, "qwen2", &o)) return 1;
      // Prompt i's tokens then transformers' continuation, fed one step per
      // position after the prefill; the driver checks each sampled id.
      const size_t np = ref.prompts.size();
      std::vector<int64_t> steps;
      for (int pos = 0; pos < 8; pos++) {
        Batch b;
        std::vector<size_t> who;
        for (size_t i = 0; i < np; i++) {
          const auto& pr = ref.prompts[i];
          if (pos == 0) {
            for (size_t k = 0; k < pr.size(); k++) b.add(pr[k], static_cast<int32_t>(k), static_cast<int32_t>(i));
            for (size_t k = b.want.size() - pr.size(); k + 1 < b.want.size(); k++) b.want[k] = 0;
          } else {
            b.add(ref.tokens[i][static_cast<size_t>(pos - 1)], static_cast<int32_t>(pr.size()) + pos - 1,
                  static_cast<int32_t>(i));
          }
        }
        tppp_batch v = b.view();
        int64_t s = -1;
        RANK_OK(tppp_model_submit(o.m, &v, nullptr, &s));
        tppp_step_result r;
        r.struct_size = sizeof r;
        RANK_OK(tppp_model_wait(o.m, &r));
        RANK_CHECK(r.step == s && r.n_out == static_cast<int32_t>(np), "step %lld: %d rows", static_cast<long long>(s),
                   r.n_out);
        if (rank == 0)
          for (size_t i = 0; i < np; i++)
            RANK_CHECK(r.token[i] == ref.tokens[i][static_cast<size_t>(pos)], "position %d prompt %zu: %d, not %d",
                       pos, i, r.token[i], ref.tokens[i][static_cast<size_t>(pos)]);
        else
          RANK_CHECK(r.token == nullptr, "rank %d got tokens", rank);
      }
      int32_t ready = 0;
      tppp_step_result r;
      r.struct_size = sizeof r;
      RANK_CHECK(tppp_model_poll(o.m, &r, &ready) == TPPP_ERR_INVALID_USAGE, "poll in every-rank mode");
      RANK_CHECK(tppp_model_wait(o.m, &r) == TPPP_ERR_INVALID_USAGE, "wait with nothing in flight");
      // Rank 2 (stage 1) passes another token id: every rank is told, naming the call, rank and argument.
      Batch b;
      b.add(rank == 2 ? 7 : 5, 0, 20);
      tppp_batch v = b.view();
      tppp_status s = tppp_model_submit(o.m, &v, nullptr, nullptr);
      RANK_CHECK(s == TPPP_ERR_INVALID_USAGE && std::string(tppp_last_error()).find("submit: rank 2's token ids") !=
                                                    std::string::npos,
                 "%s: %s", tppp_status_string(s), tppp_last_error());
      // The bug it guards against: TP ranks 0 and 1 with batches of one size but other ids got wrong logits
      // with TPPP_OK from forward. Now: refused everywhere, nothing written.
      Batch f;
      f.add(rank == 1 ? 9 : 5, 0, 21);
      f.add(6, 1, 21);
      tppp_batch fv = f.view();
      s = tppp_model_forward(o.m, &fv, TPPP_OUT_IDS, nullptr, nullptr, nullptr);
      RANK_CHECK(s == TPPP_ERR_INVALID_USAGE && std::string(tppp_last_error()).find("forward: rank 1's token ids") !=
                                                    std::string::npos,
                 "%s: %s", tppp_status_string(s), tppp_last_error());
      // Sampling parameters that differ on one rank: named too.
      tppp_sampling_params sp = sampler(rank == 3 ? 0.5f : 0.7f, 0, 1.f, 1);
      const tppp_sampling_params* spp[1] = {&sp};
      tppp_step_params stp;
      tppp_step_params_init(&stp, sizeof stp);
      stp.sampling = spp;
      s = tppp_model_submit(o.m, &v, &stp, nullptr);
      RANK_CHECK(s == TPPP_ERR_INVALID_USAGE && std::string(tppp_last_error()).find("rank 2's token ids") != std::string::npos,
                 "%s: %s", tppp_status_string(s), tppp_last_error());
      b.tok[0] = 5;
      v = b.view();
      s = tppp_model_submit(o.m, &v, &stp, nullptr);
      RANK_CHECK(s == TPPP_ERR_INVALID_USAGE && std::string(tppp_last_error()).find("rank 3's sampling parameters") !=
                                                    std::string::npos,
                 "%s: %s", tppp_status_string(s), tppp_last_error());
      RANK_CHECK(tppp_model_remove_seq(o.m, rank == 0 ? 1 : 2) == TPPP_ERR_INVALID_USAGE, "remove of other ids");
      // Agreed again: the model is usable.
      sp.temperature = 0.7f;
      RANK_OK(tppp_model_submit(o.m, &v, &stp, nullptr));
      RANK_OK(tppp_model_wait(o.m, &r));
      RANK_CHECK(r.n_out == 1, "%d rows", r.n_out);
      return 0;
    });
    CHECK_MESSAGE(th::all_zero(codes), th::codes_str(codes));
  }

  TEST_CASE("a seed gives the same sampled tokens on every grid, through generate and through steps") {
    const Ref ref = load_ref("qwen2");
    const tppp_sampling_params sp = sampler(0.9f, 40, 0.95f, 4242);
    const std::string base = tmp_path("seed");
    struct Grid {
      int tp, pp;
    };
    std::vector<std::string> got;
    for (const Grid gr : {Grid{1, 1}, Grid{2, 1}, Grid{4, 1}, Grid{1, 2}, Grid{2, 2}, Grid{4, 2}, Grid{1, 3}, Grid{2, 3},
                          Grid{4, 3}}) {
      CAPTURE(gr.tp);
      CAPTURE(gr.pp);
      const std::string out = base + "_" + std::to_string(gr.tp) + "x" + std::to_string(gr.pp);
      auto codes = th::run_ranks(gr.tp * gr.pp, 180, [&](int rank, const tppp_unique_id& id) {
        Open o;
        if (open_model(id, rank, gr.tp, gr.pp, "qwen2", &o, 4096, 16, 30000, true)) return 1;
        if (rank != 0) {
          RANK_OK(tppp_model_follow(o.m, 60000));
          return 0;
        }
        std::vector<const int32_t*> ptr;
        std::vector<int32_t> lens;
        for (const auto& p : ref.prompts) {
          ptr.push_back(p.data());
          lens.push_back(static_cast<int32_t>(p.size()));
        }
        const int32_t max_new = 16, np = static_cast<int32_t>(ref.prompts.size());
        std::vector<int32_t> tok(static_cast<size_t>(np * max_new)), cnt(static_cast<size_t>(np));
        tppp_generate_params gp;
        tppp_generate_params_init(&gp, sizeof gp);
        gp.max_new = max_new;
        gp.sampling = &sp;
        gp.prefill_chunk = gr.pp == 3 ? 3 : 0;  // another chunking on one grid
        RANK_OK(tppp_model_generate(o.m, np, ptr.data(), lens.data(), &gp, tok.data(), cnt.data(), nullptr));
        std::vector<std::vector<int32_t>> gen(static_cast<size_t>(np));
        for (int32_t i = 0; i < np; i++)
          gen[static_cast<size_t>(i)].assign(tok.begin() + i * max_new, tok.begin() + i * max_new + cnt[static_cast<size_t>(i)]);
        std::vector<std::vector<int32_t>> steps;
        if (serve(o.m, ref.prompts, max_new, gr.pp + 1, &sp, &steps)) return 1;
        RANK_CHECK(steps == gen, "steps and generate sampled differently");
        write_tokens(out, gen);
        RANK_OK(tppp_model_stop(o.m));
        return 0;
      });
      CHECK_MESSAGE(th::all_zero(codes), th::codes_str(codes));
      got.push_back(read_all(out));
      std::remove(out.c_str());
    }
    for (size_t k = 1; k < got.size(); k++) CHECK_MESSAGE(got[k] == got[0], "grid ", k, ":\n", got[k], "vs\n", got[0]);
    CHECK(got[0].size() > 20);
    // Not greedy: sampling changed the tokens.
    std::string greedy;
    for (const auto& t : ref.tokens) {
      for (size_t k = 0; k < 16; k++) greedy += std::to_string(t[k]) + " ";
      greedy += "\n";
    }
    CHECK(got[0] != greedy);
  }

  TEST_CASE("EOS from generation_config.json ends a prompt (kept) unless ignore_eos; per-prompt stop ids; a stopping callback") {
    const Ref ref = load_ref("qwen2");
    const std::string dir = tmp_path("eos");
    const int32_t eos = ref.tokens[0][3];
    REQUIRE(std::system(("mkdir -p " + dir + " && cp " + ckpt("qwen2") + "/config.json " + ckpt("qwen2") +
                         "/model.safetensors " + dir + "/").c_str()) == 0);
    {
      std::ofstream f(dir + "/generation_config.json");
      f << "{\"eos_token_id\": [" << eos << ", 300]}";
    }
    auto codes = th::run_ranks(2, 120, [&](int rank, const tppp_unique_id& id) {
      tppp_group_params gp = th::params(1, 2, 30000);
      Open o;
      RANK_OK(tppp_group_create(&id, 2, rank, &gp, &o.g));
      tppp_checkpoint_t c = nullptr;
      RANK_OK(tppp_checkpoint_open(dir.c_str(), &c));
      tppp_model_params mp;
      tppp_model_params_init(&mp, sizeof mp);
      RANK_OK(tppp_model_create(o.g, c, &mp, &o.m));
      tppp_checkpoint_close(c);
      tppp_model_info in;
      if (info(o.m, &in)) return 1;
      RANK_CHECK(in.n_eos == 2 && in.eos_ids[0] == eos && in.eos_ids[1] == 300, "eos ids: %d", in.n_eos);
      const int32_t* p0 = ref.prompts[0].data();
      const int32_t l0 = static_cast<int32_t>(ref.prompts[0].size());
      std::vector<int32_t> tok(20), cnt(1);
      tppp_generate_params g;
      tppp_generate_params_init(&g, sizeof g);
      g.max_new = 20;
      RANK_OK(tppp_model_generate(o.m, 1, &p0, &l0, &g, tok.data(), cnt.data(), nullptr));
      if (rank == 0) RANK_CHECK(cnt[0] == 4 && tok[3] == eos, "stopped after %d tokens", cnt[0]);
      g.ignore_eos = 1;
      RANK_OK(tppp_model_generate(o.m, 1, &p0, &l0, &g, tok.data(), cnt.data(), nullptr));
      if (rank == 0) RANK_CHECK(cnt[0] == 20, "ignore_eos: %d tokens", cnt[0]);
      // Per-prompt stop ids: prompt 0 ends at transformers' third token (kept).
      const int32_t stop0[1] = {ref.tokens[0][2]};
      const int32_t* each[1] = {stop0};
      const int32_t n_each[1] = {1};
      g.stop_ids_each = each;
      g.n_stop_each = n_each;
      RANK_OK(tppp_model_generate(o.m, 1, &p0, &l0, &g, tok.data(), cnt.data(), nullptr));
      if (rank == 0) RANK_CHECK(cnt[0] == 3 && tok[2] == stop0[0], "per-prompt stop: %d tokens", cnt[0]);
      g.stop_ids_each = nullptr;
      g.n_stop_each = nullptr;
      g.on_token_stop = [](void*, int32_t, int32_t) -> int32_t { return 1; };  // every first token ends
      RANK_OK(tppp_model_generate(o.m, 1, &p0, &l0, &g, tok.data(), cnt.data(), nullptr));
      if (rank == 0) RANK_CHECK(cnt[0] == 1, "stopping callback: %d tokens", cnt[0]);
      return 0;
    });
    CHECK_MESSAGE(th::all_zero(codes), th::codes_str(codes));
    std::system(("rm -rf " + dir).c_str());
  }

  TEST_CASE("cancel under a running stream, seq_rm, and the refusals") {
    const Ref ref = load_ref("qwen2");
    auto codes = th::run_ranks(2, 120, [&](int rank, const tppp_unique_id& id) {
      Open o;
      if (open_model(id, rank, 1, 2, "qwen2", &o, 4096, 4, 30000, true)) return 1;
      if (rank != 0) {
        RANK_OK(tppp_model_follow(o.m, 60000));
        return 0;
      }
      tppp_model_info in;
      if (info(o.m, &in)) return 1;
      auto prefill = [&](size_t i, int32_t seq, int64_t* step) {
        Batch b;
        for (size_t k = 0; k < ref.prompts[i].size(); k++) b.add(ref.prompts[i][k], static_cast<int32_t>(k), seq);
        tppp_batch v = b.view();
        return tppp_model_submit(o.m, &v, nullptr, step);
      };
      int64_t s0 = -1, s1 = -1;
      RANK_OK(prefill(0, 1, &s0));
      RANK_OK(prefill(1, 2, &s1));
      // Sequence 1 is in flight: refused, naming it.
      tppp_status st = prefill(0, 1, nullptr);
      RANK_CHECK(st == TPPP_ERR_INVALID_USAGE && std::string(tppp_last_error()).find("sequence 1") != std::string::npos,
                 "%s: %s", tppp_status_string(st), tppp_last_error());
      // Cancel sequence 1 with its step in flight: its rows are dropped.
      RANK_OK(tppp_model_remove_seq(o.m, 1));
      tppp_step_result r;
      r.struct_size = sizeof r;
      RANK_OK(tppp_model_wait(o.m, &r));
      RANK_CHECK(r.step == s0 && r.n_out == 0, "cancelled step: %d rows", r.n_out);
      RANK_OK(tppp_model_wait(o.m, &r));
      RANK_CHECK(r.step == s1 && r.n_out == 11 && r.token[10] == ref.tokens[1][0], "step 1: %d rows", r.n_out);
      // The id is free again; the model is usable.
      RANK_OK(prefill(2, 1, nullptr));
      RANK_OK(tppp_model_wait(o.m, &r));
      RANK_CHECK(r.n_out == 2 && r.token[1] == ref.tokens[2][0], "reused id: %d rows", r.n_out);
      // seq_rm: sequence 2 (11 tokens) back to 5, then its tail again.
      RANK_CHECK(tppp_model_seq_rm(o.m, 2, 3, 6) == TPPP_ERR_NOT_SUPPORTED, "middle: %s", tppp_last_error());
      RANK_CHECK(tppp_model_seq_rm(o.m, 2, 6, 3) == TPPP_ERR_INVALID_ARGUMENT, "p1 < p0");
      RANK_OK(tppp_model_seq_rm(o.m, 2, 5, -1));
      Batch b;
      for (size_t k = 5; k < 11; k++) b.add(ref.prompts[1][k], static_cast<int32_t>(k), 2);
      tppp_step_params p;
      tppp_step_params_init(&p, sizeof p);
      p.outputs = TPPP_OUT_LOGITS;
      tppp_batch v = b.view();
      RANK_OK(tppp_model_submit(o.m, &v, &p, nullptr));
      RANK_OK(tppp_model_wait(o.m, &r));
      RANK_CHECK(r.n_out == 6 && r.logits, "after seq_rm: %d rows", r.n_out);
      for (int32_t k = 0; k < 6; k++) {
        const float* want = ref.logits.data() + ref.offsets[1] + static_cast<size_t>(5 + k) * static_cast<size_t>(ref.vocab);
        const double e = row_err(r.logits + static_cast<size_t>(k) * static_cast<size_t>(ref.vocab), want, ref.vocab);
        RANK_CHECK(e < 1e-4, "after seq_rm, position %d: relative error %.3g", 5 + k, e);
      }
      // Bad sampling parameters: named, nothing sent.
      tppp_sampling_params bad = sampler(0.5f, 0, 1.5f, 1);
      const tppp_sampling_params* bp[1] = {&bad};
      Batch one;
      one.add(3, 0, 9);
      tppp_batch ov = one.view();
      p.sampling = bp;
      st = tppp_model_submit(o.m, &ov, &p, nullptr);
      RANK_CHECK(st == TPPP_ERR_INVALID_ARGUMENT && std::string(tppp_last_error()).find("top_p") != std::string::npos,
                 "%s: %s", tppp_status_string(st), tppp_last_error());
      RANK_OK(tppp_model_remove_seq(o.m, 1));
      RANK_OK(tppp_model_remove_seq(o.m, 2));
      tppp_model_info after;
      if (info(o.m, &after)) return 1;
      RANK_CHECK(after.free_pages == in.free_pages, "%d of %d pages free", after.free_pages, in.free_pages);
      RANK_OK(tppp_model_stop(o.m));
      return 0;
    });
    CHECK_MESSAGE(th::all_zero(codes), th::codes_str(codes));
  }

  TEST_CASE("seq_cp shares a prefix's pages: the same logits as a fresh prefill; pages counted once; refusals named") {
    const Ref ref = load_ref("qwen2");
    auto codes = th::run_ranks(2, 120, [&](int rank, const tppp_unique_id& id) {
      Open o;
      if (open_model(id, rank, 1, 2, "qwen2", &o, 4096, 4, 30000, true)) return 1;
      if (rank != 0) {
        RANK_OK(tppp_model_follow(o.m, 60000));
        return 0;
      }
      tppp_model_info in, now;
      if (info(o.m, &in)) return 1;
      const std::vector<int32_t>& q = ref.prompts[1];  // 11 tokens: pages 0-1 full, page 2 partial
      tppp_step_result r;
      r.struct_size = sizeof r;
      auto run = [&](int32_t seq, size_t from, size_t to, int32_t outputs) {
        Batch b;
        for (size_t k = from; k < to; k++) b.add(q[k], static_cast<int32_t>(k), seq);
        tppp_step_params p;
        tppp_step_params_init(&p, sizeof p);
        p.outputs = outputs;
        tppp_batch v = b.view();
        const tppp_status st = tppp_model_submit(o.m, &v, &p, nullptr);
        return st != TPPP_OK ? st : tppp_model_wait(o.m, &r);
      };
      RANK_OK(run(1, 0, q.size(), 0));
      if (info(o.m, &now)) return 1;
      RANK_CHECK(now.free_pages == in.free_pages - 3, "the prompt holds %d pages", in.free_pages - now.free_pages);
      // Sequence 2 shares the first 8 positions (2 pages), then prefills the rest itself.
      RANK_OK(tppp_model_seq_cp(o.m, 1, 2, 0, 8));
      if (info(o.m, &now)) return 1;
      RANK_CHECK(now.free_pages == in.free_pages - 3, "seq_cp took pages: %d free", now.free_pages);
      RANK_OK(run(2, 8, q.size(), TPPP_OUT_LOGITS));
      RANK_CHECK(r.n_out == 3 && r.logits && r.token[2] == ref.tokens[1][0], "shared: %d rows", r.n_out);
      for (size_t k = 0; k < 3; k++) {
        const float* want = ref.logits.data() + ref.offsets[1] + (8 + k) * static_cast<size_t>(ref.vocab);
        const double e = row_err(r.logits + k * static_cast<size_t>(ref.vocab), want, ref.vocab);
        RANK_CHECK(e < 1e-4, "after a shared prefix, position %zu: relative error %.3g", 8 + k, e);
      }
      if (info(o.m, &now)) return 1;
      RANK_CHECK(now.free_pages == in.free_pages - 4, "one page of its own: %d free", now.free_pages);
      // Refusals, each naming what is wrong; nothing changes.
      struct Bad { int32_t src, dst, p0, p1; tppp_status st; const char* says; };
      for (const Bad& b : {Bad{1, 2, 0, 8, TPPP_ERR_INVALID_USAGE, "holds"},
                           Bad{1, 3, 0, 6, TPPP_ERR_NOT_SUPPORTED, "share 4"},
                           Bad{1, 3, 2, 8, TPPP_ERR_NOT_SUPPORTED, "p0 2"},
                           Bad{1, 3, 0, 40, TPPP_ERR_INVALID_ARGUMENT, "holds 11"},
                           Bad{1, 1, 0, 4, TPPP_ERR_INVALID_ARGUMENT, "both sequence 1"},
                           Bad{1, 999, 0, 4, TPPP_ERR_INVALID_ARGUMENT, "max_seqs"}}) {
        const tppp_status st = tppp_model_seq_cp(o.m, b.src, b.dst, b.p0, b.p1);
        RANK_CHECK(st == b.st && std::string(tppp_last_error()).find(b.says) != std::string::npos,
                   "seq_cp(%d, %d, %d, %d): %s: %s", b.src, b.dst, b.p0, b.p1, tppp_status_string(st),
                   tppp_last_error());
      }
      // Sequence 1 back to 6 keeps page 1, which sequence 2 shares: rewriting position 6 is refused.
      RANK_OK(tppp_model_seq_rm(o.m, 1, 6, -1));
      const tppp_status st = run(1, 6, 7, 0);
      RANK_CHECK(st == TPPP_ERR_NOT_SUPPORTED && std::string(tppp_last_error()).find("share") != std::string::npos,
                 "%s: %s", tppp_status_string(st), tppp_last_error());
      // Pages go back only when the last holder lets go.
      RANK_OK(tppp_model_remove_seq(o.m, 1));
      if (info(o.m, &now)) return 1;
      RANK_CHECK(now.free_pages == in.free_pages - 3, "sequence 2 still holds 3 pages: %d free", now.free_pages);
      RANK_OK(tppp_model_remove_seq(o.m, 2));
      if (info(o.m, &now)) return 1;
      RANK_CHECK(now.free_pages == in.free_pages, "%d of %d pages free", now.free_pages, in.free_pages);
      RANK_OK(tppp_model_stop(o.m));
      return 0;
    });
    CHECK_MESSAGE(th::all_zero(codes), th::codes_str(codes));
  }
}
