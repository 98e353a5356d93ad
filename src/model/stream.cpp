// The streaming engine (see the header): items through the stages, the
// last stage's sampling, the results back.
#include "model/stream.hpp"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <limits>

#include "core/error.hpp"
#include "core/trace.hpp"
#include "group/group.hpp"
#include "model/model.hpp"
#include "transport/tags.hpp"

namespace tppp {
namespace {

using Clock = std::chrono::steady_clock;
using tags::ModelMsg;

double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

void pack(const Item& it, std::vector<int32_t>* m) {
  const size_t n = it.tok.size();
  m->resize(4 * n);
  std::copy(it.tok.begin(), it.tok.end(), m->begin());
  std::copy(it.pos.begin(), it.pos.end(), m->begin() + static_cast<long>(n));
  std::copy(it.seq.begin(), it.seq.end(), m->begin() + static_cast<long>(2 * n));
  std::copy(it.want.begin(), it.want.end(), m->begin() + static_cast<long>(3 * n));
}

void unpack(const std::vector<int32_t>& m, int32_t n, Item* it) {
  const auto b = m.begin();
  it->tok.assign(b, b + n);
  it->pos.assign(b + n, b + 2 * n);
  it->seq.assign(b + 2 * n, b + 3 * n);
  it->want.assign(b + 3 * n, b + 4 * n);
}

int32_t top_n_of(const Item& it) {
  int32_t n = 0;
  for (const SamplingParams& s : it.samp) n = std::max(n, s.top_logprobs);
  return n;
}

// memcpy that accepts the null data() of an empty vector (UBSan: memcpy's
// pointers must not be null even for 0 bytes).
void put(void* dst, const void* src, size_t n) {
  if (n) std::memcpy(dst, src, n);
}

}  // namespace

void Results::size_for(size_t w, int32_t n) {
  ids.assign(w, 0);
  logprob.assign(w, 0.f);
  top_n = n;
  top_ids.assign(w * static_cast<size_t>(n), -1);
  top_lp.assign(w * static_cast<size_t>(n), 0.f);
}

void Results::to_wire() {
  const size_t w = ids.size(), t = top_ids.size();
  wire.resize(w * 8 + w * 4 + t * 8);
  char* p = wire.data();
  put(p, ids.data(), w * 8);
  put(p + w * 8, logprob.data(), w * 4);
  put(p + w * 12, top_ids.data(), t * 4);
  put(p + w * 12 + t * 4, top_lp.data(), t * 4);
}

void Results::from_wire() {
  const size_t w = ids.size(), t = top_ids.size();
  const char* p = wire.data();
  put(ids.data(), p, w * 8);
  put(logprob.data(), p + w * 8, w * 4);
  put(top_ids.data(), p + w * 12, t * 4);
  put(top_lp.data(), p + w * 12 + t * 4, t * 4);
}

bool Entry::test() {
  for (RequestPtr* q : {&ring, &res, &lg})
    if (*q && !(*q)->test()) return false;
  return true;
}

void Entry::wait() {
  for (RequestPtr* q : {&ring, &res, &lg})
    if (*q) (*q)->wait();
  if (res) r.from_wire();
  ring.reset();
  res.reset();
  lg.reset();
}

Stream::Stream(Model& m)
    : m_(m), s_(*m.dec_), tr_(m.g_.transport()), pp_(m.g_.comm(TPPP_SCOPE_PP)), world_(m.g_.comm(TPPP_SCOPE_WORLD)),
      P_(m.g_.config().pp), stage_(m.g_.pos().pp_rank), V_(m.spec_.dims.vocab), dev_{m.g_.mem_kind(), m.dec_->stream()},
      head_rank_((m.g_.config().pp - 1) * m.g_.config().tp) {}

Stream::~Stream() {
  try {
    finish_sends();
  } catch (...) {  // a dead peer: its sends are cancelled as the requests go
  }
}

template <class F>
void Stream::timed(F&& f) {
  const auto t = Clock::now();
  f();
  busy_ += ms_since(t);
}

void Stream::pass_on(uint32_t no, const Item& it) {
  Outbox& o = outbox_[slot_++ % 2];
  o.finish();  // its previous micro-batch must have left: a stage runs at most two items ahead
  const int32_t n = static_cast<int32_t>(it.tok.size());
  o.head = ItemHead{kItemBatch, n, TPPP_OK, it.flags};
  pack(it, &o.meta);
  o.samp = it.samp;
  s_.swap_acts(o.h, o.r);
  const size_t act = static_cast<size_t>(n) * s_.row_bytes();
  const int to = pp_.me + 1;
  o.reqs.push_back(tr_.isend(pp_, to, tags::model(no, ModelMsg::Head), &o.head, sizeof o.head, kHostPlace));
  o.reqs.push_back(tr_.isend(pp_, to, tags::model(no, ModelMsg::Meta), o.meta.data(), o.meta.size() * 4, kHostPlace));
  if (it.flags & kFlagSampling)
    o.reqs.push_back(tr_.isend(pp_, to, tags::model(no, ModelMsg::Sampling), o.samp.data(),
                               o.samp.size() * sizeof(SamplingParams), kHostPlace));
  o.reqs.push_back(tr_.isend(pp_, to, tags::model(no, ModelMsg::Hidden), o.h.data(), act, dev_));
  o.reqs.push_back(tr_.isend(pp_, to, tags::model(no, ModelMsg::Residual), o.r.data(), act, dev_));
}

void Stream::warn_next(int32_t status, int32_t stage) noexcept {
  if (s_.last() || ended_) return;
  try {
    warn_head_ = ItemHead{kItemEnd, 0, status, stage >= 0 ? stage : stage_};
    const uint32_t no = stage_ == 0 ? m_.calls_ : expect_;
    warn_ = tr_.isend(pp_, pp_.me + 1, tags::model(no, ModelMsg::Head), &warn_head_, sizeof warn_head_, kHostPlace);
  } catch (...) {  // the next stage learns it otherwise
  }
}

void Stream::send_end(int32_t status, int32_t stage) {
  const uint32_t no = m_.calls_++;
  if (s_.last()) return;
  ended_ = true;
  Outbox& o = outbox_[slot_++ % 2];
  o.finish();
  o.head = ItemHead{kItemEnd, 0, status, stage};
  o.reqs.push_back(tr_.isend(pp_, pp_.me + 1, tags::model(no, ModelMsg::Head), &o.head, sizeof o.head, kHostPlace));
}

void Stream::finish_sends() {
  for (auto& o : outbox_) o.finish();
  for (auto& s : sent_)
    for (auto& q : s.reqs) q->wait();
  sent_.clear();
}

void Stream::finish_last(uint32_t no, const Item& it, const KvPlan& kv, Entry* local) {
  const size_t w = kv.wanted.size();
  m_.note_tokens(it.view());
  if (w == 0) return;
  const bool head = m_.g_.config().rank == head_rank_;
  const bool want_logits = (it.flags & kFlagLogits) != 0, sampling = (it.flags & kFlagSampling) != 0;
  Results r;
  r.size_for(w, sampling ? top_n_of(it) : 0);
  if (sampling && !want_logits && local_candidates(it)) {
    timed([&] { sample_local(it, kv, &r); });
  } else if (!sampling) {  // greedy: the distributed argmax (or the gathered logits' argmax)
    if (want_logits && head) r.logits.resize(w * static_cast<size_t>(V_));
    timed([&] { m_.head_ids(kv, want_logits, head ? r.logits.data() : nullptr, r.ids.data()); });
  } else {
    // Sampling on the head rank over the gathered logits (see DESIGN: the
    // gather against per-rank candidates), ids broadcast where they go on.
    // Logits nobody asked for land in a buffer kept warm (no page faults).
    std::vector<float>& lg = want_logits ? r.logits : logits_;
    if (head) lg.resize(w * static_cast<size_t>(V_));
    timed([&] {
      s_.head(kv, true, head ? lg.data() : nullptr, nullptr);
      if (head)
        for (size_t k = 0; k < w; k++) {
          const int32_t row = kv.wanted[k];
          const int32_t seq = it.seq[static_cast<size_t>(row)], pos = it.pos[static_cast<size_t>(row)];
          const Draw d = m_.sample(it.samp[k], lg.data() + k * static_cast<size_t>(V_), seq, pos, &scratch_);
          r.ids[k] = d.id;
          r.logprob[k] = d.logprob;
          for (size_t j = 0; j < d.top_ids.size(); j++) {
            r.top_ids[k * static_cast<size_t>(r.top_n) + j] = d.top_ids[j];
            r.top_lp[k * static_cast<size_t>(r.top_n) + j] = d.top_logprobs[j];
          }
        }
      if ((it.flags & kFlagRing) && m_.g_.config().tp > 1)
        tr_.broadcast(m_.g_.comm(TPPP_SCOPE_TP), r.ids.data(), w, TPPP_DTYPE_I64, 0, kHostPlace);
    });
  }
  if (local) {  // P = 1: stage 0 is the last stage
    local->r = std::move(r);
    return;
  }
  while (!sent_.empty() && std::all_of(sent_.front().reqs.begin(), sent_.front().reqs.end(),
                                       [](const RequestPtr& q) { return q->test(); }))
    sent_.pop_front();
  sent_.emplace_back();
  Sent& s = sent_.back();
  s.r = std::move(r);
  if (it.flags & kFlagRing)
    s.reqs.push_back(tr_.isend(pp_, 0, tags::model(no, ModelMsg::Ring), s.r.ids.data(), w * 8, kHostPlace));
  if (head && (it.flags & kFlagResults)) {
    s.r.to_wire();
    s.reqs.push_back(tr_.isend(world_, 0, tags::model(no, ModelMsg::Results), s.r.wire.data(), s.r.wire.size(),
                               kHostPlace));
  }
  if (head && want_logits)
    s.reqs.push_back(tr_.isend(world_, 0, tags::model(no, ModelMsg::Logits), s.r.logits.data(),
                               s.r.logits.size() * 4, kHostPlace));
}

bool Stream::local_candidates(const Item& it) const {
  if (m_.g_.config().tp == 1) return false;
  for (const SamplingParams& p : it.samp)
    if (is_greedy(p) || p.top_k <= 0 || wants_logprobs(p)) return false;
  return true;
}

// Every TP rank of the last stage: its slice's logits, penalties on it, its
// top-k per row (exactly k, ties by the smaller id), one all-gather of the
// candidates, then the same draw on every rank from the merged set. What
// crosses the wire is w x k (logit, id) pairs per rank instead of the
// vocabulary, and no rank waits for another's sampling.
void Stream::sample_local(const Item& it, const KvPlan& kv, Results* r) {
  const size_t w = kv.wanted.size();
  int64_t per = 0, c0 = 0, valid = 0;
  s_.head_local(kv, &logits_, &per, &c0, &valid);
  int32_t K = 0;
  for (const SamplingParams& p : it.samp) K = std::max(K, p.top_k);
  const size_t k = static_cast<size_t>(std::min<int64_t>(K, per));  // the same on every rank
  const int tp = m_.g_.config().tp;
  std::vector<Cand> mine(w * k, Cand{std::numeric_limits<float>::quiet_NaN(), -1}), all(mine.size() * static_cast<size_t>(tp));
  std::vector<Cand> c;
  for (size_t q = 0; q < w; q++) {
    const int32_t row = kv.wanted[q];
    const SamplingParams& p = it.samp[q];
    float* x = logits_.data() + q * static_cast<size_t>(per);
    if (has_penalties(p))
      penalize(x, valid, c0, p, m_.history(it.seq[static_cast<size_t>(row)], it.pos[static_cast<size_t>(row)]));
    top_k_cands(x, valid, c0, p.top_k, true, &c);
    std::copy(c.begin(), c.end(), mine.begin() + static_cast<long>(q * k));
  }
  tr_.all_gather(m_.g_.comm(TPPP_SCOPE_TP), mine.data(), all.data(), mine.size() * sizeof(Cand), TPPP_DTYPE_U8,
                 kHostPlace);
  for (size_t q = 0; q < w; q++) {
    c.clear();
    for (int t = 0; t < tp; t++) {
      const Cand* b = all.data() + static_cast<size_t>(t) * w * k + q * k;
      for (size_t j = 0; j < k; j++)
        if (b[j].id >= 0) c.push_back(b[j]);
    }
    const int32_t row = kv.wanted[q];
    m_.history(it.seq[static_cast<size_t>(row)], it.pos[static_cast<size_t>(row)]);  // marks the output's start
    const int32_t id = draw_cands(&c, it.samp[q], it.pos[static_cast<size_t>(row)] + 1);
    r->ids[q] = id >= 0 ? id : 0;
  }
}

std::unique_ptr<Entry> Stream::emit(const Item& it, const KvPlan& kv) {
  const BatchView b = it.view();
  const uint32_t no = m_.calls_++;
  TraceRange tr("item %u", no);
  s_.prepare(b, kv);
  timed([&] {
    s_.embed(b);
    s_.run_layers(b.n, false);
  });
  std::unique_ptr<Entry> e(new Entry());
  e->no = no;
  e->flags = it.flags;
  const size_t w = kv.wanted.size();
  if (P_ == 1) {
    finish_last(no, it, kv, e.get());
  } else {
    pass_on(no, it);
    if (w > 0) {
      const bool driver = m_.driver();
      e->r.size_for(w, (it.flags & kFlagSampling) ? top_n_of(it) : 0);
      if (it.flags & kFlagRing)
        e->ring = tr_.irecv(pp_, P_ - 1, tags::model(no, ModelMsg::Ring), e->r.ids.data(), w * 8, kHostPlace);
      if (driver && (it.flags & kFlagResults)) {
        e->r.to_wire();
        e->res = tr_.irecv(world_, head_rank_, tags::model(no, ModelMsg::Results), e->r.wire.data(),
                           e->r.wire.size(), kHostPlace);
      }
      if (driver && (it.flags & kFlagLogits)) {
        e->r.logits.resize(w * static_cast<size_t>(V_));
        e->lg = tr_.irecv(world_, head_rank_, tags::model(no, ModelMsg::Logits), e->r.logits.data(),
                          e->r.logits.size() * 4, kHostPlace);
      }
    }
  }
  m_.book_.commit(kv);
  m_.st_.tokens += b.n;
  return e;
}

bool Stream::follow_one(Item* it) {
  const uint32_t no = m_.calls_;
  expect_ = no;
  ItemHead h{};
  tr_.irecv(pp_, pp_.me - 1, tags::model(no, ModelMsg::Head), &h, sizeof h, kHostPlace)->wait();
  m_.calls_ = no + 1;
  if (h.kind == kItemEnd) {
    if (h.status != TPPP_OK) {
      // Pass the failure on without waiting for this stage's sends: the
      // next stage may be the one that is stuck, and waiting a timeout here
      // would make every stage above it wait one more in turn.
      const int at = h.flags >= 0 && h.flags < pp_.size() ? h.flags : 0;
      warn_next(h.status, at);
      ended_ = true;
      fail(h.status, "stage %d (rank %d) stopped the stream (%s); its error says why", at,
           pp_.ranks[static_cast<size_t>(at)], tppp_status_string(h.status));
    }
    if (!s_.last()) {  // pass the End on
      Outbox& o = outbox_[slot_++ % 2];
      o.finish();
      o.head = h;
      o.reqs.push_back(tr_.isend(pp_, pp_.me + 1, tags::model(no, ModelMsg::Head), &o.head, sizeof o.head, kHostPlace));
    }
    finish_sends();
    return false;
  }
  if (h.kind != kItemBatch || h.n <= 0 || h.n > m_.p_.max_batch)
    fail(TPPP_ERR_FORMAT, "stage %d got a micro-batch header of kind %d with %d tokens", stage_, h.kind, h.n);
  meta_.resize(4 * static_cast<size_t>(h.n));
  const size_t act = static_cast<size_t>(h.n) * s_.row_bytes();
  Backend& be = *m_.g_.backend();
  auto rm = tr_.irecv(pp_, pp_.me - 1, tags::model(no, ModelMsg::Meta), meta_.data(), meta_.size() * 4, kHostPlace);
  auto rh = tr_.irecv(pp_, pp_.me - 1, tags::model(no, ModelMsg::Hidden), in_h_.get(be, act), act, dev_);
  auto rr = tr_.irecv(pp_, pp_.me - 1, tags::model(no, ModelMsg::Residual), in_r_.get(be, act), act, dev_);
  rm->wait();
  unpack(meta_, h.n, it);
  it->flags = h.flags;
  const BatchView b = it->view();
  const KvPlan kv = m_.book_.plan(b, V_);  // stage 0 made the same plan: cannot fail here
  it->samp.clear();
  if (h.flags & kFlagSampling) {
    it->samp.resize(kv.wanted.size());
    tr_.irecv(pp_, pp_.me - 1, tags::model(no, ModelMsg::Sampling), it->samp.data(),
              it->samp.size() * sizeof(SamplingParams), kHostPlace)
        ->wait();
  }
  rh->wait();
  rr->wait();
  s_.swap_acts(in_h_, in_r_);
  TraceRange tr("item %u", no);
  s_.prepare(b, kv);
  timed([&] { s_.run_layers(b.n, true); });
  if (s_.last())
    finish_last(no, *it, kv, nullptr);
  else
    pass_on(no, *it);
  m_.book_.commit(kv);
  m_.st_.tokens += b.n;
  return true;
}

}  // namespace tppp
