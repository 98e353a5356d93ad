// Generation as a client of the streaming engine (stream.hpp; docs/DESIGN.md
// section 9). Stage 0 composes the items: prompt chunks first (chunked
// prefill: stage 1 starts on chunk 0 while stage 0 reads chunk 1), then
// decode steps of G groups of sequences taking turns; the last stage samples
// and hands the ids back to every stage-0 TP rank (the ring), which then
// sends that group's next step: with G >= P groups, every stage has an item
// to work on. The other stages follow the stream until its End (which also
// carries stage 0's failure, so no stage waits for items that never come).
//
// Why not the scheduler's Plan: a Plan is a static schedule over fixed
// micro-batches; here items are made in answer to the ring (sequences stop
// at different steps, groups wait for their prefill), so stage 0 decides
// online and the other stages follow the stream in order.
#include <algorithm>
#include <chrono>
#include <cstring>
#include <deque>

#include "core/error.hpp"
#include "group/group.hpp"
#include "model/model.hpp"
#include "model/stream.hpp"

namespace tppp {
namespace {

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

}  // namespace

class Generation {
 public:
  Generation(Model& m, Stream& s, const std::vector<std::vector<int32_t>>& prompts, const GenerateOptions& o,
             const TokenFn& on_token, float* first_logits)
      : m_(m), s_(s), prompts_(prompts), o_(o), on_token_(on_token), first_logits_(first_logits),
        P_(m.g_.config().pp), V_(m.spec_.dims.vocab) {}

  std::vector<std::vector<int32_t>> run() {
    const auto t0 = Clock::now();
    out_.assign(prompts_.size(), {});
    s_.begin();
    try {
      if (m_.pp_rank() == 0) {
        run_first();
      } else {
        Item it;
        while (s_.follow_one(&it)) {
        }
      }
    } catch (const Error& e) {
      s_.warn_next(e.status());
      throw;
    }
    m_.st_.busy_ms += s_.take_busy();
    m_.st_.wall_ms += ms_since(t0);
    return std::move(out_);
  }

 private:
  enum class St : uint8_t { Prefill, Ready, Flight, Done };
  struct Flight {
    int32_t group = -1;          // -1: a prefill chunk
    std::vector<int32_t> owner;  // the prompt of each wanted row
    std::unique_ptr<Entry> e;
  };

  int32_t max_new(int32_t i) const {
    return o_.max_new_each.empty() ? o_.max_new : o_.max_new_each[static_cast<size_t>(i)];
  }

  // Runs the item here and sends it on. False, with fail_ set, when the
  // cache cannot take it (then the stream's End carries the status).
  bool emit(Item&& it, int32_t group, std::vector<int32_t>&& owner) {
    KvPlan kv;
    try {
      kv = m_.book_.plan(it.view(), V_);
    } catch (const Error& e) {
      fail_ = e.status();
      fail_msg_ = e.what();
      return false;
    }
    it.flags |= kFlagRing;
    if (!is_greedy(o_.sampling) || has_penalties(o_.sampling)) {
      it.flags |= kFlagSampling;
      it.samp.assign(owner.size(), o_.sampling);
    }
    Flight f;
    f.group = group;
    f.owner = std::move(owner);
    f.e = s_.emit(it, kv);
    flight_.push_back(std::move(f));
    return true;
  }

  // A prompt ends at max_new, a stop id, EOS (unless ignore_eos), or when the
  // driver's callback says so (returns true).
  bool ends(int32_t i, int32_t t) {
    auto& out = out_[static_cast<size_t>(i)];
    out.push_back(t);
    bool end = static_cast<int32_t>(out.size()) >= max_new(i) ||
               std::find(o_.stop.begin(), o_.stop.end(), t) != o_.stop.end() ||
               (!o_.stop_each.empty() && std::find(o_.stop_each[static_cast<size_t>(i)].begin(),
                                                   o_.stop_each[static_cast<size_t>(i)].end(), t) !=
                                             o_.stop_each[static_cast<size_t>(i)].end()) ||
               (!o_.ignore_eos && std::find(m_.spec_.eos.begin(), m_.spec_.eos.end(), t) != m_.spec_.eos.end());
    if (m_.driver() && on_token_ && on_token_(i, t)) end = true;
    return end;
  }

  void take(Flight& f) {
    f.e->wait();
    const Results& r = f.e->r;
    const bool keep_logits = first_logits_ && m_.driver();
    std::vector<int32_t> end(f.owner.size(), 0);
    for (size_t k = 0; k < f.owner.size(); k++) {
      const int32_t i = f.owner[k];
      last_[static_cast<size_t>(i)] = static_cast<int32_t>(r.ids[k]);
      if (f.group < 0 && keep_logits && !r.logits.empty())
        std::memcpy(first_logits_ + static_cast<size_t>(i) * static_cast<size_t>(V_),
                    r.logits.data() + k * static_cast<size_t>(V_), static_cast<size_t>(V_) * 4);
      end[k] = max_new(i) <= 0 || ends(i, static_cast<int32_t>(r.ids[k]));
    }
    // Only the driver hears its callback; every stage-0 TP rank must make the
    // same items, so with a callback that may stop, its verdicts go to them.
    if (o_.callback_stops && m_.g_.config().tp > 1 && !end.empty())
      m_.g_.transport().broadcast(m_.g_.comm(TPPP_SCOPE_TP), end.data(), end.size(), TPPP_DTYPE_I32, 0, kHostPlace);
    for (size_t k = 0; k < f.owner.size(); k++) st_[static_cast<size_t>(f.owner[k])] = end[k] ? St::Done : St::Ready;
    if (f.group >= 0) group_busy_[static_cast<size_t>(f.group)] = false;
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
        it.add(last_[static_cast<size_t>(i)], len_[static_cast<size_t>(i)], i, true);
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
      const bool end = cur_pos_ + 1 == pr.size();
      it.add(pr[cur_pos_], static_cast<int32_t>(cur_pos_), i, end);
      cur_pos_++;
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
      while (!flight_.empty() && !flight_.front().e->awaits()) {
        take(flight_.front());
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
      take(flight_.front());
      flight_.pop_front();
    }
    s_.send_end(fail_);
    s_.finish_sends();
    if (fail_) throw Error(fail_, "generate: " + fail_msg_);
  }

  Model& m_;
  Stream& s_;
  const std::vector<std::vector<int32_t>>& prompts_;
  const GenerateOptions& o_;
  const TokenFn& on_token_;
  float* first_logits_;
  const int32_t P_;
  const int64_t V_;
  std::vector<std::vector<int32_t>> out_;
  std::deque<Flight> flight_;
  std::vector<St> st_;
  std::vector<int32_t> last_, len_;  // per prompt: the token to feed next, its position
  std::vector<bool> group_busy_;
  size_t chunk_ = 0, cur_prompt_ = 0, cur_pos_ = 0;
  tppp_status fail_ = TPPP_OK;
  std::string fail_msg_;
};

void Model::generate_here(const std::vector<std::vector<int32_t>>& prompts, const GenerateOptions& o,
                          const TokenFn& on_token, std::vector<std::vector<int32_t>>* tokens, float* first_logits) {
  const int32_t np = static_cast<int32_t>(prompts.size());
  std::vector<std::vector<int32_t>> out;
  try {
    Generation gen(*this, stream(), prompts, o, on_token, first_logits);
    out = gen.run();
  } catch (...) {
    for (int32_t i = 0; i < np; i++) forget(i);
    throw;
  }
  for (int32_t i = 0; i < np; i++) forget(i);
  if (tokens) *tokens = std::move(out);
}

}  // namespace tppp
