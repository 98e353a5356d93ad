// C shims of the model runtime (tppp_model_*): argument checks, then
// tppp::Model (src/model/model.hpp).
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "c_api.h"
#include "c_api/handles.hpp"
#include "c_api/shim.hpp"
#include "model/model.hpp"

struct tppp_model_s {
  std::unique_ptr<tppp::Model> m;
  tppp::StepOut out;  // the last wait / poll's results (tppp_step_result points into it)
};

namespace {

tppp::Model& model(tppp_model_t m, const char* op) {
  REQUIRE(m && m->m, "%s: model handle is NULL", op);
  return *m->m;
}

void default_model_params(tppp_model_params* p) {
  std::memset(p, 0, sizeof *p);
  p->struct_size = sizeof *p;
  const tppp::ModelParams d;
  p->dtype = d.dtype;
  p->page_size = d.page_size;
  p->max_seqs = d.max_seqs;
  p->kv_tokens = d.kv_tokens;
  p->max_batch = d.max_batch;
}

void default_generate_params(tppp_generate_params* p) {
  std::memset(p, 0, sizeof *p);
  p->struct_size = sizeof *p;
  p->max_new = 16;
}

void default_sampling_params(tppp_sampling_params* p) {
  std::memset(p, 0, sizeof *p);
  p->struct_size = sizeof *p;
  const tppp::SamplingParams d;
  p->temperature = d.temperature;
  p->top_k = d.top_k;
  p->top_p = d.top_p;
  p->min_p = d.min_p;
  p->repetition_penalty = d.repetition_penalty;
  p->frequency_penalty = d.frequency_penalty;
  p->presence_penalty = d.presence_penalty;
  p->logprobs = d.logprobs;
  p->top_logprobs = d.top_logprobs;
  p->seed = d.seed;
}

void default_step_params(tppp_step_params* p) {
  std::memset(p, 0, sizeof *p);
  p->struct_size = sizeof *p;
}

// A host's versioned sampling struct -> the library's (defaults where the
// host's struct is older); checked by the model.
tppp::SamplingParams sampling_of(const tppp_sampling_params* in, const char* what) {
  tppp_sampling_params p;
  default_sampling_params(&p);
  tppp_shim::read_versioned(in, &p, what);
  tppp::SamplingParams s;
  s.temperature = p.temperature;
  s.top_k = p.top_k;
  s.top_p = p.top_p;
  s.min_p = p.min_p;
  s.repetition_penalty = p.repetition_penalty;
  s.frequency_penalty = p.frequency_penalty;
  s.presence_penalty = p.presence_penalty;
  s.logprobs = p.logprobs;
  s.top_logprobs = p.top_logprobs;
  s.seed = p.seed;
  return s;
}

void fill_result(const tppp::StepOut& o, tppp_step_result* out) {
  tppp_step_result v;
  std::memset(&v, 0, sizeof v);
  v.step = o.step;
  v.n_out = static_cast<int32_t>(o.seq.size());
  v.seq_id = o.seq.empty() ? nullptr : o.seq.data();
  if (!o.token.empty()) {  // the driver's rows
    v.token = o.token.data();
    v.logprob = o.r.logprob.data();
    v.n_top = o.r.top_n;
    v.top_ids = o.r.top_n ? o.r.top_ids.data() : nullptr;
    v.top_logprobs = o.r.top_n ? o.r.top_lp.data() : nullptr;
    v.logits = o.r.logits.empty() ? nullptr : o.r.logits.data();
  }
  tppp_shim::write_versioned(v, out, "tppp_step_result");
}

}  // namespace

extern "C" {

tppp_status tppp_model_params_init(tppp_model_params* p, size_t size) {
  API_BEGIN
  tppp_model_params d;
  default_model_params(&d);
  tppp_shim::init_versioned(p, size, d, "tppp_model_params_init");
  API_END
}

tppp_status tppp_generate_params_init(tppp_generate_params* p, size_t size) {
  API_BEGIN
  tppp_generate_params d;
  default_generate_params(&d);
  tppp_shim::init_versioned(p, size, d, "tppp_generate_params_init");
  API_END
}

tppp_status tppp_sampling_params_init(tppp_sampling_params* p, size_t size) {
  API_BEGIN
  tppp_sampling_params d;
  default_sampling_params(&d);
  tppp_shim::init_versioned(p, size, d, "tppp_sampling_params_init");
  API_END
}

tppp_status tppp_step_params_init(tppp_step_params* p, size_t size) {
  API_BEGIN
  tppp_step_params d;
  default_step_params(&d);
  tppp_shim::init_versioned(p, size, d, "tppp_step_params_init");
  API_END
}

tppp_status tppp_model_create(tppp_group_t g, tppp_checkpoint_t c, const tppp_model_params* params,
                              tppp_model_t* out) {
  API_BEGIN
  REQUIRE(out, "tppp_model_create: out is NULL");
  *out = nullptr;
  tppp::Group& G = tppp_shim::live(g, "tppp_model_create");
  REQUIRE(c && c->c, "tppp_model_create: checkpoint handle is NULL");
  tppp_model_params p;
  default_model_params(&p);
  if (params) tppp_shim::read_versioned(params, &p, "tppp_model_params");
  tppp::ModelParams mp;
  mp.dtype = p.dtype;
  mp.page_size = p.page_size;
  mp.max_seqs = p.max_seqs;
  mp.kv_tokens = p.kv_tokens;
  mp.max_batch = p.max_batch;
  REQUIRE(p.follow == 0 || p.follow == 1, "tppp_model_create: follow %d must be 0 or 1", p.follow);
  mp.follow = p.follow != 0;
  mp.max_inflight = p.max_inflight;
  if (p.layer_split)
    for (int32_t i = 0; i < G.config().pp; i++) mp.layer_split.push_back(p.layer_split[i]);
  std::unique_ptr<tppp_model_s> h(new tppp_model_s());
  h->m.reset(new tppp::Model(G, *c->c, mp));
  *out = h.release();
  API_END
}

tppp_status tppp_model_get_info(tppp_model_t m, tppp_model_info* out) {
  API_BEGIN
  const tppp::Model& M = model(m, "tppp_model_get_info");
  REQUIRE(out, "tppp_model_get_info: out is NULL");
  const tppp::ModelSpec& s = M.spec();
  tppp_model_info v;
  std::memset(&v, 0, sizeof v);
  v.dtype = M.dtype();
  v.architecture = s.arch_name.c_str();
  v.vocab_size = s.dims.vocab;
  v.hidden_size = s.dims.hidden;
  v.num_layers = s.dims.layers;
  v.num_heads = s.dims.heads;
  v.num_kv_heads = s.dims.kv_heads;
  v.head_dim = s.dims.head_dim;
  v.layer_begin = M.stage().layer_begin();
  v.layer_end = M.stage().layer_end();
  v.page_size = M.kv().page_size();
  v.num_pages = M.kv().num_pages();
  v.free_pages = M.kv().free_pages();
  v.max_seqs = M.kv().max_seqs();
  v.eos_ids = s.eos.empty() ? nullptr : s.eos.data();
  v.n_eos = static_cast<int32_t>(s.eos.size());
  v.steps_in_flight = M.in_flight();
  tppp_shim::write_versioned(v, out, "tppp_model_info");
  API_END
}

tppp_status tppp_model_forward(tppp_model_t m, const tppp_batch* b, int32_t outputs, float* logits, int64_t* ids,
                               int32_t* n_out) {
  API_BEGIN
  tppp::Model& M = model(m, "tppp_model_forward");
  REQUIRE(b, "tppp_model_forward: batch is NULL");
  tppp::BatchView v{b->n_tokens, b->token, b->pos, b->seq_id, b->logits};
  const int32_t w = M.forward(v, outputs, logits, ids);
  if (n_out) *n_out = w;
  API_END
}

tppp_status tppp_model_remove_seq(tppp_model_t m, int32_t seq_id) {
  API_BEGIN
  model(m, "tppp_model_remove_seq").remove(seq_id);
  API_END
}

tppp_status tppp_model_generate(tppp_model_t m, int32_t n_prompts, const int32_t* const* prompts,
                                const int32_t* prompt_lens, const tppp_generate_params* params, int32_t* out_tokens,
                                int32_t* out_counts, float* first_logits) {
  API_BEGIN
  tppp::Model& M = model(m, "tppp_model_generate");
  REQUIRE(n_prompts > 0, "tppp_model_generate: n_prompts %d must be > 0", n_prompts);
  REQUIRE(prompts && prompt_lens, "tppp_model_generate: prompts or prompt_lens is NULL");
  tppp_generate_params p;
  default_generate_params(&p);
  if (params) tppp_shim::read_versioned(params, &p, "tppp_generate_params");
  REQUIRE(p.max_new >= 0, "tppp_model_generate: max_new %d is negative", p.max_new);
  REQUIRE(p.n_stop >= 0 && (p.n_stop == 0 || p.stop_ids), "tppp_model_generate: n_stop %d with stop_ids %p",
          p.n_stop, static_cast<const void*>(p.stop_ids));
  std::vector<std::vector<int32_t>> pr(static_cast<size_t>(n_prompts));
  for (int32_t i = 0; i < n_prompts; i++) {
    REQUIRE(prompts[i] && prompt_lens[i] > 0, "tppp_model_generate: prompt %d is NULL or has length %d", i,
            prompt_lens[i]);
    pr[static_cast<size_t>(i)].assign(prompts[i], prompts[i] + prompt_lens[i]);
  }
  tppp::GenerateOptions o;
  o.max_new = p.max_new;
  o.stop.assign(p.stop_ids, p.stop_ids + p.n_stop);
  o.microbatches = p.microbatches;
  o.prefill_chunk = p.prefill_chunk;
  REQUIRE(p.ignore_eos == 0 || p.ignore_eos == 1, "tppp_model_generate: ignore_eos %d must be 0 or 1", p.ignore_eos);
  o.ignore_eos = p.ignore_eos != 0;
  if (p.sampling) o.sampling = sampling_of(p.sampling, "tppp_generate_params.sampling");
  REQUIRE(!p.stop_ids_each == !p.n_stop_each, "tppp_model_generate: stop_ids_each and n_stop_each go together");
  if (p.stop_ids_each)
    for (int32_t i = 0; i < n_prompts; i++) {
      REQUIRE(p.n_stop_each[i] >= 0 && (p.n_stop_each[i] == 0 || p.stop_ids_each[i]),
              "tppp_model_generate: prompt %d: n_stop_each %d with stop_ids_each %p", i, p.n_stop_each[i],
              static_cast<const void*>(p.stop_ids_each[i]));
      o.stop_each.emplace_back(p.stop_ids_each[i] ? p.stop_ids_each[i] : nullptr,
                               p.stop_ids_each[i] ? p.stop_ids_each[i] + p.n_stop_each[i] : nullptr);
    }
  if (p.max_new_each) {
    o.max_new_each.assign(p.max_new_each, p.max_new_each + n_prompts);
    for (int32_t i = 0; i < n_prompts; i++)
      REQUIRE(p.max_new_each[i] >= 0 && p.max_new_each[i] <= p.max_new,
              "tppp_model_generate: max_new_each[%d] = %d is outside [0, max_new %d] (max_new is the rows' stride)", i,
              p.max_new_each[i], p.max_new);
  }
  tppp::TokenFn cb;
  void* user = p.user;
  if (p.on_token_stop) {
    const tppp_token_stop_fn fn = p.on_token_stop;
    o.callback_stops = true;
    cb = [fn, user](int32_t prompt, int32_t token) { return fn(user, prompt, token) != 0; };
  } else if (p.on_token) {
    const tppp_token_fn fn = p.on_token;
    cb = [fn, user](int32_t prompt, int32_t token) {
      fn(user, prompt, token);
      return false;
    };
  }
  std::vector<std::vector<int32_t>> toks;
  M.generate(pr, o, cb, &toks, first_logits);
  for (int32_t i = 0; i < n_prompts && i < static_cast<int32_t>(toks.size()); i++) {
    const std::vector<int32_t>& t = toks[static_cast<size_t>(i)];
    if (out_tokens && !t.empty()) std::memcpy(out_tokens + static_cast<size_t>(i) * static_cast<size_t>(p.max_new), t.data(), t.size() * 4);
    if (out_counts) out_counts[i] = static_cast<int32_t>(t.size());
  }
  API_END
}

tppp_status tppp_model_submit(tppp_model_t m, const tppp_batch* b, const tppp_step_params* params, int64_t* step) {
  API_BEGIN
  tppp::Model& M = model(m, "tppp_model_submit");
  REQUIRE(b, "tppp_model_submit: batch is NULL");
  tppp_step_params p;
  default_step_params(&p);
  if (params) tppp_shim::read_versioned(params, &p, "tppp_step_params");
  REQUIRE((p.outputs & ~TPPP_OUT_LOGITS) == 0, "tppp_model_submit: outputs %d (TPPP_OUT_LOGITS or 0)", p.outputs);
  REQUIRE(b->n_tokens > 0, "tppp_model_submit: n_tokens %d must be > 0", b->n_tokens);
  std::vector<tppp::SamplingParams> samp;
  if (p.sampling) {
    samp.resize(static_cast<size_t>(b->n_tokens));
    for (int32_t i = 0; i < b->n_tokens; i++)
      if (p.sampling[i]) {
        const std::string what = "tppp_step_params.sampling[" + std::to_string(i) + "]";
        samp[static_cast<size_t>(i)] = sampling_of(p.sampling[i], what.c_str());
      }
  }
  tppp::BatchView v{b->n_tokens, b->token, b->pos, b->seq_id, b->logits};
  const int64_t s = M.submit(v, samp, p.outputs);
  if (step) *step = s;
  API_END
}

tppp_status tppp_model_wait(tppp_model_t m, tppp_step_result* out) {
  API_BEGIN
  tppp::Model& M = model(m, "tppp_model_wait");
  REQUIRE(out, "tppp_model_wait: out is NULL");
  M.wait(&m->out);
  fill_result(m->out, out);
  API_END
}

tppp_status tppp_model_poll(tppp_model_t m, tppp_step_result* out, int32_t* ready) {
  API_BEGIN
  tppp::Model& M = model(m, "tppp_model_poll");
  REQUIRE(out && ready, "tppp_model_poll: out or ready is NULL");
  if (!M.poll(&m->out)) {
    *ready = 0;
  } else {
    fill_result(m->out, out);
    *ready = 1;
  }
  API_END
}

tppp_status tppp_model_seq_rm(tppp_model_t m, int32_t seq_id, int32_t p0, int32_t p1) {
  API_BEGIN
  model(m, "tppp_model_seq_rm").seq_rm(seq_id, p0, p1);
  API_END
}

tppp_status tppp_model_seq_cp(tppp_model_t m, int32_t seq_id_src, int32_t seq_id_dst, int32_t p0, int32_t p1) {
  API_BEGIN
  model(m, "tppp_model_seq_cp").seq_cp(seq_id_src, seq_id_dst, p0, p1);
  API_END
}

tppp_status tppp_model_get_stats(tppp_model_t m, tppp_model_stats* out) {
  API_BEGIN
  const tppp::Model& M = model(m, "tppp_model_get_stats");
  REQUIRE(out, "tppp_model_get_stats: out is NULL");
  tppp_model_stats v;
  std::memset(&v, 0, sizeof v);
  v.stage = M.pp_rank();
  v.busy_ms = M.stats().busy_ms;
  v.wall_ms = M.stats().wall_ms;
  v.tokens = M.stats().tokens;
  v.graph_replays = M.stage().graph_replays();
  v.graph_captures = M.stage().graph_captures();
  tppp_shim::write_versioned(v, out, "tppp_model_stats");
  API_END
}

tppp_status tppp_model_follow(tppp_model_t m, int64_t idle_timeout_ms) {
  API_BEGIN
  REQUIRE(idle_timeout_ms >= -1, "tppp_model_follow: idle_timeout_ms %lld (-1: no bound, else >= 0)",
          static_cast<long long>(idle_timeout_ms));
  model(m, "tppp_model_follow").follow(idle_timeout_ms);
  API_END
}

tppp_status tppp_model_stop(tppp_model_t m) {
  API_BEGIN
  model(m, "tppp_model_stop").stop();
  API_END
}

void tppp_model_destroy(tppp_model_t m) {
  try {
    delete m;
  } catch (...) {
  }
}

}  // extern "C"
