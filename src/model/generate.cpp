// Greedy generation with the pipeline stages overlapping (docs/DESIGN.md
// section 9). Stage 0 cuts the work into micro-batches ("items"): prompt
// chunks first (chunked prefill: stage 1 starts on chunk 0 while stage 0
// reads chunk 1), then decode steps of G groups of sequences taking turns.
// Each item flows stage to stage with its header and batch (tokens,
// positions, sequences, wanted flags), hidden and residual; every stage
// plans and commits the item's KV in the same order, so the books agree
// without talking. The last stage samples and hands the ids back to stage 0
// (the ring), which then sends that group's next step: with G >= P groups,
// every stage has an item to work on. An End item closes the stream (and
// carries stage 0's failure, if any, so no stage waits for items that will
// never come).
//
// Why not the scheduler's Plan: a Plan is a static schedule over fixed
// micro-batches; here items are made in answer to the ring (sequences stop
// at different steps, groups wait for their prefill), so stage 0 decides
// online and the other stages simply follow the stream in order.
#include <algorithm>
#include <chrono>
#include <cstring>
#include <deque>

#include "core/error.hpp"
#include "core/trace.hpp"
#include "core/log.hpp"
#include "group/group.hpp"
#include "model/model.hpp"
#include "transport/tags.hpp"

namespace tppp {
namespace {

using Clock = std::chrono::steady_clock;
using tags::ModelMsg;

enum : int32_t { kItemBatch = 0, kItemEnd = 1 };
enum : int32_t { kFlagLogits = 1 };  // the wanted rows' logits go to the driver (prefill)

struct ItemHead {
  int32_t kind;    // kItemBatch or kItemEnd
  int32_t n;       // tokens
  int32_t status;  // End: TPPP_OK, or why stage 0 stopped
  int32_t flags;
};

// One micro-batch's tokens: the batch and its wire form (int32 [4, n]:
// tokens, positions, sequences, wanted flags).
struct Item {
  std::vector<int32_t> tok, pos, seq;
  std::vector<int8_t> want;
  int32_t flags = 0;
  BatchView view() const {
    return BatchView{static_cast<int32_t>(tok.size()), tok.data(), pos.data(), seq.data(), want.data()};
  }
  void pack(std::vector<int32_t>* m) const {
    const size_t n = tok.size();
    m->resize(4 * n);
    std::copy(tok.begin(), tok.end(), m->begin());
    std::copy(pos.begin(), pos.end(), m->begin() + static_cast<long>(n));
    std::copy(seq.begin(), seq.end(), m->begin() + static_cast<long>(2 * n));
    std::copy(want.begin(), want.end(), m->begin() + static_cast<long>(3 * n));
  }
  void unpack(const std::vector<int32_t>& m, int32_t n) {
    const auto b = m.begin();
    tok.assign(b, b + n);
    pos.assign(b + n, b + 2 * n);
    seq.assign(b + 2 * n, b + 3 * n);
    want.assign(b + 3 * n, b + 4 * n);
  }
};

double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

}  // namespace

class Generation {
 public:
  Generation(Model& m, const std::vector<std::vector<int32_t>>& prompts, const GenerateOptions& o,
             const std::function<void(int32_t, int32_t)>& on_token, float* first_logits)
      : m_(m), s_(*m.dec_), g_(m.g_), tr_(m.g_.transport()), pp_(m.g_.comm(TPPP_SCOPE_PP)),
        world_(m.g_.comm(TPPP_SCOPE_WORLD)), prompts_(prompts), o_(o), on_token_(on_token),
        first_logits_(first_logits), P_(m.g_.config().pp), stage_(m.g_.pos().pp_rank),
        V_(m.spec_.dims.vocab), dev_{m.g_.mem_kind(), m.dec_->stream()},
        head_rank_((m.g_.config().pp - 1) * m.g_.config().tp) {}

  std::vector<std::vector<int32_t>> run() {
    const auto t0 = Clock::now();
    const int32_t np = static_cast<int32_t>(prompts_.size());
    out_.assign(static_cast<size_t>(np), {});
    try {
      if (stage_ == 0)
        run_first();
      else
        run_later();
    } catch (const Error& e) {
      warn_next(e.status());
      throw;
    }
    m_.st_.busy_ms += busy_;
    m_.st_.wall_ms += ms_since(t0);
    return std::move(out_);
  }

 private:
  // ---- every stage
  // The sends of one micro-batch to the next stage; its buffers live until
  // they are done.
  struct Outbox {
    ItemHead head{};
    std::vector<int32_t> meta;
    DevBuf h, r;
    std::vector<RequestPtr> reqs;
    void finish() {
      for (auto& q : reqs) q->wait();
      reqs.clear();
    }
  };
  // Results on their way from the last stage (ids to stage 0, logits to the driver).
  struct Sent {
    std::vector<int64_t> ids;
    std::vector<float> logits;
    std::vector<RequestPtr> reqs;
  };

  template <class F>
  void timed(F&& f) {
    const auto t = Clock::now();
    f();
    busy_ += ms_since(t);
  }

  // Sends the decoder's activations (and the item) to the next stage.
  void pass_on(uint32_t no, const Item& it) {
    Outbox& o = outbox_[slot_++ % 2];
    o.finish();  // its previous micro-batch must have left
    const int32_t n = static_cast<int32_t>(it.tok.size());
    o.head = ItemHead{kItemBatch, n, TPPP_OK, it.flags};
    it.pack(&o.meta);
    s_.swap_acts(o.h, o.r);
    const size_t act = static_cast<size_t>(n) * s_.row_bytes();
    const int to = pp_.me + 1;
    o.reqs.push_back(tr_.isend(pp_, to, tags::model(no, ModelMsg::Head), &o.head, sizeof o.head, kHostPlace));
    o.reqs.push_back(tr_.isend(pp_, to, tags::model(no, ModelMsg::Meta), o.meta.data(), o.meta.size() * 4, kHostPlace));
    o.reqs.push_back(tr_.isend(pp_, to, tags::model(no, ModelMsg::Hidden), o.h.data(), act, dev_));
    o.reqs.push_back(tr_.isend(pp_, to, tags::model(no, ModelMsg::Residual), o.r.data(), act, dev_));
  }

  // A failure here (a dead or stuck peer, a timeout): the next stage, which
  // waits for item expect_ from this one, gets an End with the status and
  // this stage's index, and stops at once instead of timing out in turn.
  void warn_next(int32_t status, int32_t stage = -1) noexcept {
    if (s_.last() || ended_) return;
    try {
      warn_head_ = ItemHead{kItemEnd, 0, status, stage >= 0 ? stage : stage_};
      const uint32_t no = stage_ == 0 ? m_.calls_ : expect_;
      warn_ = tr_.isend(pp_, pp_.me + 1, tags::model(no, ModelMsg::Head), &warn_head_, sizeof warn_head_, kHostPlace);
    } catch (...) {  // the next stage learns it otherwise
    }
  }

  void send_end(uint32_t no, int32_t status, int32_t stage = 0) {
    if (s_.last()) return;
    ended_ = true;
    Outbox& o = outbox_[slot_++ % 2];
    o.finish();
    o.head = ItemHead{kItemEnd, 0, status, stage};
    o.reqs.push_back(tr_.isend(pp_, pp_.me + 1, tags::model(no, ModelMsg::Head), &o.head, sizeof o.head, kHostPlace));
  }

  // Last stage: samples the item's wanted rows. ids: every TP rank; logits
  // (flags): the head rank's [w, vocab], sent on to the driver unless it is
  // the driver. P > 1: the ids go back to stage 0.
  void finish_last(uint32_t no, const KvPlan& kv, int32_t flags, std::vector<int64_t>* ids, std::vector<float>* lg) {
    const size_t w = kv.wanted.size();
    ids->assign(w, 0);
    if (w == 0) return;
    const bool head = g_.config().rank == head_rank_, want_logits = (flags & kFlagLogits) != 0;
    if (want_logits && head) lg->resize(w * static_cast<size_t>(V_));
    timed([&] { m_.head_ids(kv, want_logits, head ? lg->data() : nullptr, ids->data()); });
    if (P_ == 1) return;
    while (!sent_.empty() && std::all_of(sent_.front().reqs.begin(), sent_.front().reqs.end(),
                                         [](const RequestPtr& q) { return q->test(); }))
      sent_.pop_front();
    sent_.emplace_back();
    Sent& s = sent_.back();
    s.ids.swap(*ids);
    s.reqs.push_back(tr_.isend(pp_, 0, tags::model(no, ModelMsg::Ring), s.ids.data(), w * 8, kHostPlace));
    if (want_logits && head) {
      s.logits.swap(*lg);
      s.reqs.push_back(tr_.isend(world_, 0, tags::model(no, ModelMsg::Logits), s.logits.data(), s.logits.size() * 4,
                                 kHostPlace));
    }
  }

  void finish_sends() {
    for (auto& o : outbox_) o.finish();
    for (auto& s : sent_)
      for (auto& q : s.reqs) q->wait();
    sent_.clear();
  }

  // ---- stages after the first: follow the stream in order.
  void run_later() {
    const Comm& pp = pp_;
    uint32_t no = m_.calls_;
    ItemHead hb{};
    auto next = tr_.irecv(pp, pp.me - 1, tags::model(no, ModelMsg::Head), &hb, sizeof hb, kHostPlace);
    std::vector<int32_t> meta;
    DevBuf in_h, in_r;
    Item it;
    std::vector<int64_t> ids;
    std::vector<float> lg;
    for (;; no++) {
      expect_ = no;
      next->wait();
      const ItemHead h = hb;
      if (h.kind == kItemEnd) {
        m_.calls_ = no + 1;
        if (h.status != TPPP_OK) {
          // Pass the failure on without waiting for this stage's sends: the
          // next stage may be the one that is stuck, and waiting a timeout
          // here would make every stage above it wait one more in turn.
          const int at = h.flags >= 0 && h.flags < pp_.size() ? h.flags : 0;
          warn_next(h.status, at);
          ended_ = true;
          fail(h.status, "generate: stage %d (rank %d) stopped the generation (%s); its error says why", at,
               pp_.ranks[static_cast<size_t>(at)], tppp_status_string(h.status));
        }
        send_end(no, h.status, h.flags);
        finish_sends();
        return;
      }
      if (h.kind != kItemBatch || h.n <= 0 || h.n > m_.p_.max_batch)
        fail(TPPP_ERR_FORMAT, "generate: stage %d got a micro-batch header of kind %d with %d tokens", stage_, h.kind,
             h.n);
      meta.resize(4 * static_cast<size_t>(h.n));
      const size_t act = static_cast<size_t>(h.n) * s_.row_bytes();
      Backend& be = *g_.backend();
      auto rm = tr_.irecv(pp, pp.me - 1, tags::model(no, ModelMsg::Meta), meta.data(), meta.size() * 4, kHostPlace);
      auto rh = tr_.irecv(pp, pp.me - 1, tags::model(no, ModelMsg::Hidden), in_h.get(be, act), act, dev_);
      auto rr = tr_.irecv(pp, pp.me - 1, tags::model(no, ModelMsg::Residual), in_r.get(be, act), act, dev_);
      next = tr_.irecv(pp, pp.me - 1, tags::model(no + 1, ModelMsg::Head), &hb, sizeof hb, kHostPlace);
      rm->wait();
      it.unpack(meta, h.n);
      it.flags = h.flags;
      const BatchView b = it.view();
      const KvPlan kv = m_.book_.plan(b, V_);  // stage 0 made the same plan: cannot fail here
      rh->wait();
      rr->wait();
      s_.swap_acts(in_h, in_r);
      TraceRange tr("item %u", no);
      s_.prepare(b, kv);
      timed([&] { s_.run_layers(b.n, true); });
      if (s_.last())
        finish_last(no, kv, h.flags, &ids, &lg);
      else
        pass_on(no, it);
      m_.book_.commit(kv);
      m_.st_.tokens += b.n;
    }
  }

  // ---- stage 0: makes the items and takes the results.
  enum class St : uint8_t { Prefill, Ready, Flight, Done };
  struct Entry {  // an item in flight, until its results are back
    int32_t group = -1;          // -1: a prefill chunk
    std::vector<int32_t> owner;  // sequence of each wanted row
    std::vector<int64_t> ids;    // [w]
    std::vector<float> logits;   // [w, vocab], the driver, prefill
    RequestPtr ring, lg;
    bool awaits() const { return ring || lg; }  // results from the last stage
    void wait() {
      if (ring) ring->wait();
      if (lg) lg->wait();
    }
  };

  // Computes the item on this stage and sends it on (or samples it, P = 1).
  // False, with fail_ set, when the cache cannot take it.
  bool emit(Item&& it, int32_t group, std::vector<int32_t>&& owner) {
    const BatchView b = it.view();
    KvPlan kv;
    try {
      kv = m_.book_.plan(b, V_);
    } catch (const Error& e) {
      fail_ = e.status();
      fail_msg_ = e.what();
      return false;
    }
    const uint32_t no = m_.calls_++;
    TraceRange tr("item %u (group %d)", no, group);
    s_.prepare(b, kv);
    timed([&] {
      s_.embed(b);
      s_.run_layers(b.n, false);
    });
    std::unique_ptr<Entry> e(new Entry());
    e->group = group;
    e->owner = std::move(owner);
    const size_t w = kv.wanted.size();
    if (P_ == 1) {
      finish_last(no, kv, it.flags, &e->ids, &e->logits);
    } else {
      pass_on(no, it);
      if (w > 0) {
        e->ids.assign(w, 0);
        e->ring = tr_.irecv(pp_, P_ - 1, tags::model(no, ModelMsg::Ring), e->ids.data(), w * 8, kHostPlace);
        if ((it.flags & kFlagLogits) && m_.driver()) {
          e->logits.resize(w * static_cast<size_t>(V_));
          e->lg = tr_.irecv(world_, head_rank_, tags::model(no, ModelMsg::Logits), e->logits.data(),
                            e->logits.size() * 4, kHostPlace);
        }
      }
    }
    m_.book_.commit(kv);
    m_.st_.tokens += b.n;
    flight_.push_back(std::move(e));
    return true;
  }

  void accept(int32_t i, int32_t t) {
    auto& out = out_[static_cast<size_t>(i)];
    out.push_back(t);
    if (m_.driver() && on_token_) on_token_(i, t);
    const bool end = static_cast<int32_t>(out.size()) >= o_.max_new ||
                     std::find(o_.stop.begin(), o_.stop.end(), t) != o_.stop.end();
    st_[static_cast<size_t>(i)] = end ? St::Done : St::Ready;
  }

  void take(Entry& e) {
    e.wait();
    const bool keep_logits = first_logits_ && m_.driver();
    for (size_t r = 0; r < e.owner.size(); r++) {
      const int32_t i = e.owner[r];
      last_[static_cast<size_t>(i)] = static_cast<int32_t>(e.ids[r]);
      if (e.group < 0 && keep_logits && !e.logits.empty())
        std::memcpy(first_logits_ + static_cast<size_t>(i) * static_cast<size_t>(V_),
                    e.logits.data() + r * static_cast<size_t>(V_), static_cast<size_t>(V_) * 4);
      if (o_.max_new > 0)
        accept(i, static_cast<int32_t>(e.ids[r]));
      else
        st_[static_cast<size_t>(i)] = St::Done;
    }
    if (e.group >= 0) group_busy_[static_cast<size_t>(e.group)] = false;
  }

  // Sends the next decode step of every group that is idle and whose
  // sequences are all past their prefill.
  bool emit_groups() {
    bool did = false;
    const int32_t np = static_cast<int32_t>(prompts_.size()), G = static_cast<int32_t>(group_busy_.size());
    for (int32_t g = 0; g < G && !fail_; g++) {
      if (group_busy_[static_cast<size_t>(g)]) continue;
      Item it;
      std::vector<int32_t> owner;
      bool blocked = false;
      for (int32_t i = g; i < np; i += G) {
        const St st = st_[static_cast<size_t>(i)];
        if (st == St::Prefill || st == St::Flight) blocked = true;
        if (st != St::Ready) continue;
        it.tok.push_back(last_[static_cast<size_t>(i)]);
        it.pos.push_back(len_[static_cast<size_t>(i)]);
        it.seq.push_back(i);
        it.want.push_back(1);
        owner.push_back(i);
      }
      if (blocked || owner.empty()) continue;
      if (!emit(std::move(it), g, std::vector<int32_t>(owner))) return did;
      for (int32_t i : owner) {
        st_[static_cast<size_t>(i)] = St::Flight;
        len_[static_cast<size_t>(i)]++;
      }
      group_busy_[static_cast<size_t>(g)] = true;
      did = true;
    }
    return did;
  }

  // Sends the next prompt chunk: up to `chunk` tokens, prompt after prompt.
  void emit_chunk() {
    Item it;
    std::vector<int32_t> owner;
    while (it.tok.size() < chunk_ && cur_prompt_ < prompts_.size()) {
      const auto& pr = prompts_[cur_prompt_];
      const int32_t i = static_cast<int32_t>(cur_prompt_);
      it.tok.push_back(pr[cur_pos_]);
      it.pos.push_back(static_cast<int32_t>(cur_pos_));
      it.seq.push_back(i);
      const bool end = ++cur_pos_ == pr.size();
      it.want.push_back(end ? 1 : 0);
      if (end) {
        owner.push_back(i);
        len_[static_cast<size_t>(i)] = static_cast<int32_t>(pr.size());
        cur_prompt_++;
        cur_pos_ = 0;
      }
    }
    it.flags = owner.empty() ? 0 : kFlagLogits;
    emit(std::move(it), -1, std::move(owner));
  }

  void run_first() {
    const int32_t np = static_cast<int32_t>(prompts_.size());
    const int32_t max_batch = m_.p_.max_batch;
    // Default groups: one per stage, but at least 16 sequences each. A decode
    // step of a few rows reads all of a stage's weights whatever its rows, so
    // splitting a small batch into P groups reads them P times per round for
    // nothing (bench/model: 4 sequences over PP = 2 decode 0.77x as fast with
    // 2 groups as with 1; at 32 sequences the two are even).
    int32_t G = o_.microbatches > 0 ? o_.microbatches : std::min(P_, std::max(1, np / 16));
    G = std::max(std::min(G, np), (np + max_batch - 1) / max_batch);  // a group fits a batch
    group_busy_.assign(static_cast<size_t>(G), false);
    st_.assign(static_cast<size_t>(np), St::Prefill);
    last_.assign(static_cast<size_t>(np), 0);
    len_.assign(static_cast<size_t>(np), 0);
    // Default chunk: at most min(max_batch, 512) tokens; with P > 1, small
    // enough that the prompts make 2P chunks (the stages overlap) but not
    // below 64 tokens (GEMMs of few rows waste the weights' reads).
    size_t total = 0;
    for (const auto& p : prompts_) total += p.size();
    const size_t cap = static_cast<size_t>(std::min(max_batch, 512));
    chunk_ = o_.prefill_chunk > 0 ? static_cast<size_t>(std::min(o_.prefill_chunk, max_batch))
             : P_ == 1           ? cap
                                 : std::min(cap, std::max<size_t>(64, (total + 2 * P_ - 1) / (2 * P_)));
    // Every stage-0 TP rank must make the same items in the same order, so
    // no decision here depends on timing (whether a result has arrived):
    // take the entries that await nothing, send every decode group that can
    // go, else the next prompt chunk (all prompts go in first, paced by the
    // outboxes), else wait for the oldest result.
    for (;;) {
      while (!flight_.empty() && !flight_.front()->awaits()) {
        take(*flight_.front());
        flight_.pop_front();
      }
      if (!fail_) {
        if (emit_groups()) continue;
        if (cur_prompt_ < prompts_.size()) {
          emit_chunk();
          continue;
        }
      }
      if (flight_.empty()) break;
      take(*flight_.front());
      flight_.pop_front();
    }
    send_end(m_.calls_++, fail_);
    finish_sends();
    if (fail_) throw Error(fail_, "generate: " + fail_msg_);
  }

  Model& m_;
  StageDecoder& s_;
  Group& g_;
  Transport& tr_;
  const Comm &pp_, &world_;
  const std::vector<std::vector<int32_t>>& prompts_;
  const GenerateOptions& o_;
  const std::function<void(int32_t, int32_t)>& on_token_;
  float* first_logits_;
  const int32_t P_, stage_;
  const int64_t V_;
  const Place dev_;
  const int head_rank_;
  double busy_ = 0;
  std::vector<std::vector<int32_t>> out_;
  Outbox outbox_[2];
  unsigned slot_ = 0;
  std::deque<Sent> sent_;
  // stage 0
  std::deque<std::unique_ptr<Entry>> flight_;
  std::vector<St> st_;
  std::vector<int32_t> last_, len_;  // per sequence: the token to feed next, its position
  std::vector<bool> group_busy_;
  size_t chunk_ = 0, cur_prompt_ = 0, cur_pos_ = 0;
  tppp_status fail_ = TPPP_OK;
  std::string fail_msg_;
  uint32_t expect_ = 0;   // the item this stage waits for, or (stage 0) makes next
  bool ended_ = false;    // an End went to the next stage
  ItemHead warn_head_{};  // warn_next's End; sent before the outboxes' requests end
  RequestPtr warn_;
};

void Model::generate_here(const std::vector<std::vector<int32_t>>& prompts, const GenerateOptions& o,
                          const std::function<void(int32_t, int32_t)>& on_token,
                          std::vector<std::vector<int32_t>>* tokens, float* first_logits) {
  const int32_t np = static_cast<int32_t>(prompts.size());
  std::vector<std::vector<int32_t>> out;
  try {
    Generation gen(*this, prompts, o, on_token, first_logits);
    out = gen.run();
  } catch (...) {
    for (int32_t i = 0; i < np; i++) book_.remove(i);
    throw;
  }
  for (int32_t i = 0; i < np; i++) book_.remove(i);
  if (tokens) *tokens = std::move(out);
}

}  // namespace tppp
