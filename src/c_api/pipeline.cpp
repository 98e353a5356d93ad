// extern "C" shims for the micro-batch scheduler (src/pipeline). A submitted
// run executes on one internal thread; wait joins it and reports its status.
#include <atomic>
#include <cstring>
#include <thread>

#include "c_api.h"
#include "c_api/handles.hpp"
#include "c_api/shim.hpp"
#include "core/dtype.hpp"
#include "pipeline/scheduler.hpp"

struct tppp_scheduler_s {
  std::unique_ptr<tppp::Scheduler> s;
  std::thread worker;
  std::atomic<int> done{1};
  tppp_status result = TPPP_OK;
  std::string message;
  ~tppp_scheduler_s() {
    if (worker.joinable()) worker.join();
  }
};

namespace {

tppp_scheduler_s& sched(tppp_scheduler_t s, const char* op) {
  REQUIRE(s && s->s, "%s: scheduler handle is NULL", op);
  return *s;
}

void default_params(tppp_scheduler_params* p) {
  std::memset(p, 0, sizeof *p);
  p->struct_size = sizeof *p;
  p->policy = TPPP_POLICY_FILL_DRAIN;
  p->num_microbatches = 1;
  p->steps = 1;
  p->dtype = TPPP_DTYPE_F32;
}

}  // namespace

extern "C" {

tppp_status tppp_scheduler_params_init(tppp_scheduler_params* p, size_t size) {
  API_BEGIN
  tppp_scheduler_params d;
  default_params(&d);
  tppp_shim::init_versioned(p, size, d, "tppp_scheduler_params_init");
  API_END
}

tppp_status tppp_scheduler_create(tppp_group_t g, const tppp_scheduler_params* params, tppp_scheduler_t* out) {
  API_BEGIN
  REQUIRE(g && g->g, "tppp_scheduler_create: group handle is NULL");
  REQUIRE(params && out, "tppp_scheduler_create: params or out is NULL");
  g->g->check_live("tppp_scheduler_create");
  tppp_scheduler_params p;
  default_params(&p);
  tppp_shim::read_versioned(params, &p, "tppp_scheduler_params");
  REQUIRE(p.policy == TPPP_POLICY_FILL_DRAIN || p.policy == TPPP_POLICY_DECODE_RING,
          "tppp_scheduler_create: policy %d is not a TPPP_POLICY_*", p.policy);
  tppp::SchedulerConfig c;
  c.policy = static_cast<tppp::Policy>(p.policy);
  c.microbatches = p.num_microbatches;
  c.steps = p.steps;
  c.dtype = p.dtype;
  c.hidden = p.hidden;
  c.stream = p.stream;
  std::unique_ptr<tppp_scheduler_s> h(new tppp_scheduler_s());
  h->s.reset(new tppp::Scheduler(*g->g, c));
  *out = h.release();
  API_END
}

tppp_status tppp_scheduler_set_stage_fn(tppp_scheduler_t s, tppp_stage_fn fn, void* user) {
  API_BEGIN
  tppp_scheduler_s& S = sched(s, "tppp_scheduler_set_stage_fn");
  REQUIRE(S.done.load(), "tppp_scheduler_set_stage_fn: a run is in flight");
  if (!fn) {
    S.s->set_stage_fn(nullptr);
  } else {
    S.s->set_stage_fn([fn, user](int32_t mb, int32_t step, const tppp_tensor& in, const tppp_tensor& out) {
      return fn(user, mb, step, &in, &out);
    });
  }
  API_END
}

tppp_status tppp_scheduler_add_layer(tppp_scheduler_t s, tppp_layer_t layer) {
  API_BEGIN
  tppp_scheduler_s& S = sched(s, "tppp_scheduler_add_layer");
  REQUIRE(layer && layer->l, "tppp_scheduler_add_layer: layer handle is NULL");
  REQUIRE(S.done.load(), "tppp_scheduler_add_layer: a run is in flight");
  S.s->add_layer(layer->l.get());
  API_END
}

tppp_status tppp_scheduler_submit(tppp_scheduler_t s, const tppp_tensor* in, const tppp_tensor* out) {
  API_BEGIN
  tppp_scheduler_s& S = sched(s, "tppp_scheduler_submit");
  REQUIRE(S.done.load(), "tppp_scheduler_submit: a run is already in flight (wait for it first)");
  if (in) tppp::check_tensor(*in, "tppp_scheduler_submit", "in");
  if (out) tppp::check_tensor(*out, "tppp_scheduler_submit", "out");
  if (S.worker.joinable()) S.worker.join();
  S.done.store(0);
  S.result = TPPP_ERR_IN_PROGRESS;
  tppp_tensor tin{}, tout{};
  if (in) tin = *in;
  if (out) tout = *out;
  const bool has_in = in != nullptr, has_out = out != nullptr;
  tppp_scheduler_s* self = &S;
  S.worker = std::thread([self, tin, tout, has_in, has_out] {
    try {
      self->s->run(has_in ? &tin : nullptr, has_out ? &tout : nullptr);
      self->result = TPPP_OK;
    } catch (const tppp::Error& e) {
      self->result = e.status();
      self->message = e.what();
    } catch (const std::exception& e) {
      self->result = TPPP_ERR_INTERNAL;
      self->message = e.what();
    }
    self->done.store(1);
  });
  API_END
}

tppp_status tppp_scheduler_poll(tppp_scheduler_t s, int32_t* done) {
  API_BEGIN
  tppp_scheduler_s& S = sched(s, "tppp_scheduler_poll");
  REQUIRE(done, "tppp_scheduler_poll: done is NULL");
  *done = S.done.load();
  API_END
}

tppp_status tppp_scheduler_wait(tppp_scheduler_t s) {
  API_BEGIN
  tppp_scheduler_s& S = sched(s, "tppp_scheduler_wait");
  if (S.worker.joinable()) S.worker.join();
  if (S.result != TPPP_OK) tppp::fail(S.result, "%s", S.message.c_str());
  API_END
}

tppp_status tppp_scheduler_run(tppp_scheduler_t s, const tppp_tensor* in, const tppp_tensor* out) {
  tppp_status st = tppp_scheduler_submit(s, in, out);
  return st != TPPP_OK ? st : tppp_scheduler_wait(s);
}

tppp_status tppp_scheduler_get_stats(tppp_scheduler_t s, tppp_scheduler_stats* out) {
  API_BEGIN
  tppp_scheduler_s& S = sched(s, "tppp_scheduler_get_stats");
  REQUIRE(out, "tppp_scheduler_get_stats: out is NULL");
  REQUIRE(S.done.load(), "tppp_scheduler_get_stats: a run is in flight");
  const tppp::StageStats& st = S.s->stats();
  tppp_scheduler_stats v;
  std::memset(&v, 0, sizeof v);
  v.stage = st.stage;
  v.num_microbatches = st.microbatches;
  v.steps = st.steps;
  v.wall_ms = st.wall_ms;
  v.busy_ms = st.busy_ms;
  v.idle_ms = st.idle_ms;
  v.bubble = st.bubble;
  v.theory_bubble = st.theory_bubble;
  tppp_shim::write_versioned(v, out, "tppp_scheduler_stats");
  API_END
}

tppp_status tppp_scheduler_write_trace(tppp_scheduler_t s, const char* path) {
  API_BEGIN
  tppp_scheduler_s& S = sched(s, "tppp_scheduler_write_trace");
  REQUIRE(path, "tppp_scheduler_write_trace: path is NULL");
  REQUIRE(S.done.load(), "tppp_scheduler_write_trace: a run is in flight");
  S.s->write_trace(path);
  API_END
}

void tppp_scheduler_destroy(tppp_scheduler_t s) { delete s; }

}  // extern "C"
