// Scheduler::run: one stage's replay of the plan.
#include "pipeline/scheduler.hpp"

#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>

#include "backend/backend.hpp"
#include "core/dtype.hpp"
#include "core/error.hpp"
#include "core/trace.hpp"
#include "group/group.hpp"
#include "layers/tp_layer.hpp"
#include "transport/tags.hpp"

namespace tppp {
namespace {

using Clock = std::chrono::steady_clock;

struct Header {
  int32_t status;  // TPPP_OK, or the failing stage's code
  int32_t stage;   // who failed
  int64_t rows;
};

using tags::PipeMsg;

tppp_tensor view(void* data, int32_t dt, int64_t rows, int64_t cols, int32_t mem, int32_t device) {
  tppp_tensor t{};
  t.data = data;
  t.mem_kind = mem;
  t.device = device;
  t.dtype = dt;
  t.ndim = 2;
  t.shape[0] = rows;
  t.shape[1] = cols;
  return t;
}

}  // namespace

ActBuf::~ActBuf() {
  if (p_) be_->free(p_);
}

char* ActBuf::get(Backend& be, size_t bytes) {
  if (p_ && bytes <= n_) return data();
  if (p_) be_->free(p_);
  p_ = nullptr;
  n_ = 0;
  be_ = &be;
  p_ = be.alloc(bytes ? bytes : 1);
  n_ = bytes;
  return data();
}

Scheduler::~Scheduler() {
  Backend* be = be_.get();  // held since construction: the group may already be gone
  if (comm_) {
    try {
      be->sync(comm_);
    } catch (const Error&) {  // a stuck transfer: the stream goes anyway
    }
    be->stream_destroy(comm_);
  }
  for (auto* v : {&ev_in_, &ev_out_, &ev_sent_})
    for (void* e : *v) be->event_destroy(e);
}

Scheduler::Scheduler(Group& g, const SchedulerConfig& c) : g_(g), c_(c), be_(g.backend()) {
  if (c.hidden <= 0) fail(TPPP_ERR_INVALID_ARGUMENT, "scheduler: hidden (activation columns) must be positive");
  if (c.dtype != TPPP_DTYPE_F32 && c.dtype != TPPP_DTYPE_F16 && c.dtype != TPPP_DTYPE_BF16)
    fail(TPPP_ERR_INVALID_ARGUMENT, "scheduler: dtype %s is not F32, F16 or BF16", dtype_name(c.dtype));
  const int tp = g.config().tp;
  if (c.hidden % tp != 0)
    fail(TPPP_ERR_INVALID_ARGUMENT, "scheduler: hidden %lld is not divisible by tp %d (each TP rank sends 1/tp)",
         static_cast<long long>(c.hidden), tp);
  plan_ = ::tppp::plan(g.config().pp, c.microbatches, c.policy, c.steps);
  stats_.stage = g.pos().pp_rank;
}

int32_t Scheduler::forward(int32_t mb, int32_t step, const tppp_tensor& in, const tppp_tensor& out) {
  if (fn_) return fn_(mb, step, in, out);
  // Built-in stack: in -> l0 -> l1 -> ... -> out, ping-ponging through two
  // scratch buffers that persist across calls (no allocation per forward).
  const size_t bytes = static_cast<size_t>(in.shape[0] * in.shape[1]) * dtype_size(in.dtype);
  Backend& be = *g_.backend();
  for (ActBuf& b : stack_scratch_) b.get(be, bytes);
  tppp_tensor cur = in;
  for (size_t i = 0; i < layers_.size(); i++) {
    tppp_tensor dst = i + 1 == layers_.size()
                          ? out
                          : view(stack_scratch_[i % 2].data(), in.dtype, in.shape[0], in.shape[1], in.mem_kind, in.device);
    layers_[i]->forward(cur, &dst, c_.stream);
    cur = dst;
  }
  return 0;
}

void Scheduler::run(const tppp_tensor* in, const tppp_tensor* out) {
  g_.check_live("tppp_scheduler_run");
  if (!fn_ && layers_.empty()) fail(TPPP_ERR_INVALID_USAGE, "scheduler: no stage function and no layers were given");
  const int P = plan_.stages, s = g_.pos().pp_rank, M = plan_.microbatches;
  const int tp = g_.config().tp, tr = g_.pos().tp_rank;
  const int32_t dt = c_.dtype;
  const size_t es = dtype_size(dt);
  const int64_t H = c_.hidden;
  Transport& T = g_.transport();
  const Comm& pp = g_.comm(TPPP_SCOPE_PP);
  const Comm& tpc = g_.comm(TPPP_SCOPE_TP);
  Backend& be = *g_.backend();
  const int32_t mem = be.mem_kind();
  const bool dev = mem == TPPP_MEM_CUDA;
  void* const cs = c_.stream;  // compute
  auto check_act = [&](const tppp_tensor* t, const char* what) {
    if (!t) fail(TPPP_ERR_INVALID_ARGUMENT, "scheduler: stage %d needs %s", s, what);
    if (!t->data || t->ndim != 2 || t->shape[1] != H || t->dtype != dt || t->strides ||
        (t->mem_kind != TPPP_MEM_HOST && t->mem_kind != TPPP_MEM_PINNED && t->mem_kind != mem))
      fail(TPPP_ERR_INVALID_ARGUMENT, "scheduler: %s must be contiguous [rows, %lld] of %s in host%s memory", what,
           static_cast<long long>(H), dtype_name(dt), dev ? " or device" : "");
  };
  int64_t rows = 0;
  if (s == 0) {
    check_act(in, "the input batch (stage 0)");
    rows = in->shape[0];
  }
  if (s == P - 1) check_act(out, "the output batch (last stage)");
  // Every stage learns the batch size from stage 0 (one tiny broadcast).
  T.broadcast(pp, &rows, 1, TPPP_DTYPE_I64, 0, kHostPlace);
  if (rows < M) fail(TPPP_ERR_INVALID_ARGUMENT, "scheduler: %lld rows cannot make %d micro-batches", static_cast<long long>(rows), M);
  if (s == P - 1 && out->shape[0] != rows)
    fail(TPPP_ERR_INVALID_ARGUMENT, "scheduler: output has %lld rows, the batch has %lld",
         static_cast<long long>(out->shape[0]), static_cast<long long>(rows));
  std::vector<int64_t> r0(static_cast<size_t>(M) + 1, 0);  // micro-batch m: rows [r0[m], r0[m+1])
  for (int m = 0; m < M; m++) r0[static_cast<size_t>(m) + 1] = r0[static_cast<size_t>(m)] + rows / M + (m < rows % M ? 1 : 0);
  auto mrows = [&](int m) { return r0[static_cast<size_t>(m) + 1] - r0[static_cast<size_t>(m)]; };
  auto mbytes = [&](int m) { return static_cast<size_t>(mrows(m) * H) * es; };
  // Per-micro-batch activation buffers [rows_m, H] in backend memory, kept
  // across runs so a steady stream of equal batches allocates nothing.
  auto& ibuf = ibuf_;
  auto& obuf = obuf_;
  ibuf.resize(static_cast<size_t>(M));
  obuf.resize(static_cast<size_t>(M));
  for (int m = 0; m < M; m++) {
    ibuf[static_cast<size_t>(m)].get(be, mbytes(m));
    obuf[static_cast<size_t>(m)].get(be, mbytes(m));
    if (s == 0)
      be.copy(ibuf[static_cast<size_t>(m)].data(), static_cast<const char*>(in->data) + static_cast<size_t>(r0[static_cast<size_t>(m)] * H) * es,
              mbytes(m), cs);
  }
  // CUDA groups: transfers on the communication stream, ordered against
  // compute with events; over NCCL they complete in stream order, so no
  // request is waited for on the host until the run's end.
  if (dev && !comm_) comm_ = be.stream_create();
  const Place cp = dev ? Place{mem, comm_} : kHostPlace;
  const bool ordered = dev && T.stream_ordered(cp);
  if (dev)
    for (auto* v : {&ev_in_, &ev_out_, &ev_sent_})
      while (v->size() < static_cast<size_t>(M)) v->push_back(be.event_create());
  std::vector<char> sent(static_cast<size_t>(M), 0);  // an ordered send of mb is in flight
  std::vector<RequestPtr> inflight;                   // ordered requests, waited for at the end
  // This TP rank's 1/tp of an activation.
  auto slice = [&](int m) {
    const size_t part = mbytes(m) / static_cast<size_t>(tp);
    return std::make_pair(ibuf[static_cast<size_t>(m)].data() + part * static_cast<size_t>(tr), part);
  };
  auto oslice = [&](int m) {
    const size_t part = mbytes(m) / static_cast<size_t>(tp);
    return std::make_pair(obuf[static_cast<size_t>(m)].data() + part * static_cast<size_t>(tr), part);
  };

  struct Posted {
    RequestPtr head, data;
    Header h{};
  };
  std::vector<Posted> posted(plan_.actions[static_cast<size_t>(s)].size());
  std::vector<std::vector<RequestPtr>> sending(static_cast<size_t>(M));
  std::vector<Header> send_heads(static_cast<size_t>(M) * 2);
  const auto& acts = plan_.actions[static_cast<size_t>(s)];
  auto post_recv = [&](size_t i) {
    const Action& a = acts[i];
    if (posted[i].head) return;
    const bool ring = a.act == Act::RecvRing;
    const int from = ring ? P - 1 : s - 1;
    auto sl = slice(a.mb);
    posted[i].head = T.irecv(pp, from, tags::pipeline(a.step, a.mb, M, ring ? PipeMsg::RingHead : PipeMsg::Head), &posted[i].h, sizeof(Header), kHostPlace);
    posted[i].data = T.irecv(pp, from, tags::pipeline(a.step, a.mb, M, ring ? PipeMsg::RingData : PipeMsg::Data), sl.first, sl.second, cp);
  };
  auto post_next_recv = [&](size_t after) {
    for (size_t j = after + 1; j < acts.size(); j++)
      if (acts[j].act == Act::Recv || acts[j].act == Act::RecvRing) {
        post_recv(j);
        return;
      }
  };
  int32_t bad_status = TPPP_OK, bad_stage = -1, bad_mb = -1;
  auto bad_stage_of = [&] { return bad_stage; };
  auto send_to = [&](int to, bool ring, int32_t mb, int32_t step, int32_t status) {
    Header& h = send_heads[static_cast<size_t>(mb) * 2 + (ring ? 1 : 0)];
    h = Header{status, status ? bad_stage_of() : 0, mrows(mb)};
    sending[static_cast<size_t>(mb)].push_back(T.isend(pp, to, tags::pipeline(step, mb, M, ring ? PipeMsg::RingHead : PipeMsg::Head), &h, sizeof h, kHostPlace));
    if (status == TPPP_OK) {
      auto sl = oslice(mb);
      if (dev) be.stream_wait_event(comm_, ev_out_[static_cast<size_t>(mb)]);  // the forward made it
      RequestPtr r = T.isend(pp, to, tags::pipeline(step, mb, M, ring ? PipeMsg::RingData : PipeMsg::Data), sl.first, sl.second, cp);
      if (ordered) {
        be.event_record(ev_sent_[static_cast<size_t>(mb)], comm_);
        sent[static_cast<size_t>(mb)] = 1;
        inflight.push_back(std::move(r));
      } else {
        sending[static_cast<size_t>(mb)].push_back(std::move(r));
      }
    }
  };
  events_.clear();
  const auto t_start = Clock::now();
  double busy = 0;
  // After a failure (here or reported by an upstream header) the stage keeps
  // replaying the plan: it still drains its receives, skips FORWARD and sends
  // error headers instead of data, so no neighbour waits for data that will
  // never come. A final status all-reduce over the PP scope tells the stages
  // upstream.
  std::string bad_msg;
  auto note_failure = [&](int32_t status, int32_t stage, int32_t mb, const std::string& msg) {
    if (bad_status != TPPP_OK) return;
    bad_status = status;
    bad_stage = stage;
    bad_mb = mb;
    bad_msg = msg;
  };
  bool transport_broken = false;
  try {
    post_next_recv(static_cast<size_t>(-1));
    for (size_t i = 0; i < acts.size(); i++) {
      const Action& a = acts[i];
      const size_t mb = static_cast<size_t>(a.mb);
      switch (a.act) {
        case Act::Recv:
        case Act::RecvRing: {
          post_recv(i);
          posted[i].head->wait();
          if (posted[i].h.status != TPPP_OK) {
            posted[i].data.reset();  // cancelled: no data follows an error header
            note_failure(posted[i].h.status, posted[i].h.stage, a.mb, "");
          } else {
            if (ordered) {
              inflight.push_back(std::move(posted[i].data));  // lands in stream order
            } else {
              posted[i].data->wait();
              posted[i].data.reset();
            }
            if (tp > 1 && bad_status == TPPP_OK) {
              auto sl = slice(a.mb);
              T.all_gather(tpc, sl.first, ibuf[mb].data(), sl.second, TPPP_DTYPE_U8, cp);
            }
            if (dev) be.event_record(ev_in_[mb], comm_);
          }
          posted[i].head.reset();
          post_next_recv(i);  // the next transfer overlaps this micro-batch's compute
          break;
        }
        case Act::Forward: {
          if (bad_status != TPPP_OK) break;
          for (auto& r : sending[mb]) r->wait();  // obuf[mb] may still be on the wire
          sending[mb].clear();
          if (sent[mb]) be.stream_wait_event(cs, ev_sent_[mb]);  // ... or on the comm stream
          sent[mb] = 0;
          if (dev && (s > 0 || c_.policy == Policy::DecodeRing)) be.stream_wait_event(cs, ev_in_[mb]);
          const int32_t devno = g_.config().device;
          tppp_tensor tin = view(ibuf[mb].data(), dt, mrows(a.mb), H, mem, devno),
                      tout = view(obuf[mb].data(), dt, mrows(a.mb), H, mem, devno);
          auto t0 = Clock::now();
          int32_t rc;
          std::string msg;
          try {
            TraceRange tr("stage %d: micro-batch %d step %d", s, a.mb, a.step);
            rc = forward(a.mb, a.step, tin, tout);
          } catch (const Error& e) {
            rc = e.status();
            msg = e.what();
          }
          auto t1 = Clock::now();
          double dur = std::chrono::duration<double, std::micro>(t1 - t0).count();
          busy += dur;
          events_.push_back(Event{strf("F mb%d step%d", a.mb, a.step),
                                  std::chrono::duration<double, std::micro>(t0 - t_start).count(), dur});
          if (rc != 0) {
            note_failure(rc, s, a.mb, msg);
            break;
          }
          if (dev) be.event_record(ev_out_[mb], cs);
          if (P == 1 && c_.policy == Policy::DecodeRing && a.step + 1 < plan_.steps) {
            be.copy(ibuf[mb].data(), obuf[mb].data(), mbytes(a.mb), cs);
            if (dev) be.event_record(ev_in_[mb], cs);
          }
          if (s == P - 1 && a.step + 1 == plan_.steps)
            be.copy(static_cast<char*>(out->data) + static_cast<size_t>(r0[mb] * H) * es, obuf[mb].data(),
                    mbytes(a.mb), cs);
          break;
        }
        case Act::Send: send_to(s + 1, false, a.mb, a.step, bad_status); break;
        case Act::SendRing: send_to(0, true, a.mb, a.step, bad_status); break;
      }
    }
    for (auto& v : sending)
      for (auto& r : v) r->wait();
    for (auto& r : inflight) r->wait();  // the ordered transfers (one host wait per run)
    inflight.clear();
    be.sync(cs);  // `out` is written when the run returns
    if (comm_) be.sync(comm_);
  } catch (const Error& e) {  // a dead peer, a timeout, an abort: the protocol is broken
    note_failure(e.status(), s, -1, e.what());
    transport_broken = true;
  }
  // Everyone learns the first failure, upstream stages included. A broken
  // transport (a dead or stuck peer) gets no status exchange: it would wait
  // for that peer a second timeout. This stage counts the call and tells
  // the others instead, whose exchange then fails at once, naming it.
  if (transport_broken) {
    T.collective_failed(pp, static_cast<tppp_status>(bad_status));
    fail(bad_status, "%s", bad_msg.c_str());
  }
  int64_t code = bad_status == TPPP_OK ? 0 : (static_cast<int64_t>(bad_status & 0xffff) << 16) | (bad_stage & 0xffff);
  int64_t worst = code;
  try {
    T.all_reduce(pp, &code, &worst, 1, TPPP_DTYPE_I64, TPPP_OP_MAX, kHostPlace);
  } catch (const Error& e) {
    if (bad_status == TPPP_OK) throw;  // this stage was fine, a peer is gone: report that
  }
  if (bad_status != TPPP_OK && bad_stage == s)
    fail(TPPP_ERR_REMOTE, "scheduler: the stage function failed with code %d at stage %d, micro-batch %d%s%s",
         bad_status, s, bad_mb, bad_msg.empty() ? "" : ": ", bad_msg.c_str());
  if (worst != 0)
    fail(TPPP_ERR_REMOTE, "scheduler: stage %d failed (code %d); stage %d's run fails with it",
         static_cast<int>(worst & 0xffff), static_cast<int>(worst >> 16), s);
  const double wall = std::chrono::duration<double, std::micro>(Clock::now() - t_start).count();
  stats_.microbatches = M;
  stats_.steps = plan_.steps;
  stats_.wall_ms = wall / 1000;
  stats_.busy_ms = busy / 1000;
  stats_.idle_ms = (wall - busy) / 1000;
  stats_.bubble = wall > 0 ? (wall - busy) / wall : 0;
  stats_.theory_bubble = plan_.theory_bubble();
}

void Scheduler::write_trace(const std::string& path) {
  const Comm& w = g_.comm(TPPP_SCOPE_WORLD);
  const GridPos& p = g_.pos();
  std::string mine;
  for (const Event& e : events_)
    mine += strf("{\"name\":\"%s\",\"ph\":\"X\",\"ts\":%.3f,\"dur\":%.3f,\"pid\":%d,\"tid\":0},\n", e.name.c_str(),
                 e.ts_us, e.dur_us, w.me);
  mine += strf("{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":%d,\"args\":{\"name\":\"rank %d (tp %d, pp %d)\"}}", w.me,
               w.me, p.tp_rank, p.pp_rank);
  int64_t len = static_cast<int64_t>(mine.size());
  std::vector<int64_t> lens(static_cast<size_t>(w.size()));
  Transport& T = g_.transport();
  T.all_gather(w, &len, lens.data(), 1, TPPP_DTYPE_I64, kHostPlace);
  if (w.me != 0) {
    T.isend(w, 0, tags::kPipelineTrace, mine.data(), mine.size(), kHostPlace)->wait();
    return;
  }
  std::string all = "{\"traceEvents\":[\n" + mine;
  for (int r = 1; r < w.size(); r++) {
    std::string b(static_cast<size_t>(lens[static_cast<size_t>(r)]), '\0');
    T.irecv(w, r, tags::kPipelineTrace, &b[0], b.size(), kHostPlace)->wait();
    all += ",\n" + b;
  }
  all += "\n]}\n";
  std::ofstream f(path);
  if (!f) fail(TPPP_ERR_IO, "scheduler: cannot write the trace to %s", path.c_str());
  f << all;
  if (!f) fail(TPPP_ERR_IO, "scheduler: writing %s failed", path.c_str());
}

}  // namespace tppp
