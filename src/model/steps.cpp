// A host's steps in flight (docs/DESIGN.md section 9, "Serving"): the host
// composes every batch (continuous batching: sequences join, finish and
// leave between steps) and submits it without waiting; up to max_inflight
// steps move through the stages at once, each stage busy with a different
// one, and their results come back to the driver in submission order (the
// pipeline is FIFO). A step is one item of the streaming engine (stream.hpp):
// stage 0 runs it inside submit, the later stages run it as it arrives (in
// their own submit calls in every-rank mode, from the driver's command in
// follow mode), and the last stage samples and sends the results to the
// driver. Cancel is bookkeeping: removing a sequence bumps its generation
// count, so its rows of a step still in flight are dropped when it lands,
// and the pages are freed at the same point of every rank's call order.
#include <algorithm>
#include <chrono>
#include <cstring>
#include <string>

#include "core/error.hpp"
#include "group/group.hpp"
#include "model/model.hpp"
#include "model/wire.hpp"

namespace tppp {

void Model::check_step(const BatchView& b, const std::vector<SamplingParams>& samp) const {
  if (!samp.empty() && samp.size() != static_cast<size_t>(b.n))
    fail(TPPP_ERR_INTERNAL, "submit: %zu sampling parameters for %d tokens", samp.size(), b.n);
  for (int32_t t = 0; t < b.n && !samp.empty(); t++) {
    const std::string where = "submit: token " + std::to_string(t);
    check_sampling(samp[static_cast<size_t>(t)], where.c_str());
  }
  if (p_.follow && !driver()) return;  // the driver checked; only it tracks steps
  if (!b.seq) return;  // the plan names it
  for (int32_t t = 0; t < b.n; t++) {
    if (b.seq[t] < 0 || b.seq[t] >= book_.max_seqs()) continue;  // the plan names it
    const int64_t s = busy_[static_cast<size_t>(b.seq[t])];
    if (s >= 0)
      fail(TPPP_ERR_INVALID_USAGE,
           "submit: sequence %d (token %d) is already in step %lld, which is in flight; wait for its result (or "
           "remove the sequence) first", b.seq[t], t, static_cast<long long>(s));
  }
}

int64_t Model::submit(const BatchView& b, const std::vector<SamplingParams>& samp, int32_t outputs) {
  refuse_follower("submit");
  if (leading() && stopped_) fail(TPPP_ERR_INVALID_USAGE, "submit: the driver has stopped its followers");
  agree_batch("submit", b, outputs, &samp);
  check_step(b, samp);  // a refusal costs nothing, alike on every rank
  const KvPlan kv = check(b, outputs);
  if (leading()) {
    Writer w;
    write_batch(&w, outputs, b.n, b.token, b.pos, b.seq, b.logits);
    w.i32(static_cast<int32_t>(samp.size()));
    w.put(samp.data(), samp.size() * sizeof(SamplingParams));
    send_cmd(kCmdSubmit, w.b);
  }
  return submit_here(b, samp, outputs, kv);
}

int64_t Model::submit_here(const BatchView& b, const std::vector<SamplingParams>& samp, int32_t outputs,
                           const KvPlan& kv) {
  Item it;
  for (int32_t t = 0; t < b.n; t++)
    it.add(b.token[t], b.pos[t], b.seq[t], b.logits ? b.logits[t] != 0 : t == b.n - 1);
  it.flags = kFlagResults | ((outputs & kOutLogits) ? kFlagLogits : 0);
  bool any = false;
  for (int32_t row : kv.wanted) {
    const SamplingParams sp = samp.empty() ? SamplingParams{} : samp[static_cast<size_t>(row)];
    any = any || !is_greedy(sp) || has_penalties(sp) || wants_logprobs(sp);
    it.samp.push_back(sp);
  }
  if (any)
    it.flags |= kFlagSampling;
  else
    it.samp.clear();
  const int64_t no = next_step_++;
  const auto t0 = std::chrono::steady_clock::now();
  std::unique_ptr<Entry> e;
  stream().begin();
  try {
    if (pp_rank() == 0) {
      e = stream().emit(it, kv);
    } else {
      Item got;
      if (!stream().follow_one(&got))
        fail(TPPP_ERR_INVALID_USAGE, "submit: stage %d got the end of a generation, not step %lld", pp_rank(),
             static_cast<long long>(no));
    }
  } catch (const Error& e2) {
    stream().warn_next(e2.status());
    throw;
  }
  st_.busy_ms += stream().take_busy();
  st_.wall_ms += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  if (!p_.follow || driver()) {
    Step st;
    st.no = no;
    for (int32_t row : kv.wanted) {
      const int32_t s = b.seq[row];
      st.seq.push_back(s);
      st.epoch.push_back(epoch_[static_cast<size_t>(s)]);
    }
    for (int32_t t = 0; t < b.n; t++) busy_[static_cast<size_t>(b.seq[t])] = no;
    if (driver()) st.e = std::move(e);
    steps_.push_back(std::move(st));
    // At most max_inflight steps whose results are still on their way.
    size_t coming = 0;
    for (auto it2 = steps_.rbegin(); it2 != steps_.rend(); ++it2)
      if (it2->e && it2->e->awaits() && ++coming > static_cast<size_t>(p_.max_inflight)) it2->e->wait();
  }
  return no;
}

void Model::retire(StepOut* out) {
  Step& st = steps_.front();
  if (st.e) st.e->wait();
  out->step = st.no;
  out->seq.clear();
  out->token.clear();
  Results& o = out->r;
  const Results* r = st.e ? &st.e->r : nullptr;
  const size_t V = static_cast<size_t>(spec_.dims.vocab);
  const int32_t top = r ? r->top_n : 0;
  o.ids.clear();
  o.logprob.clear();
  o.top_ids.clear();
  o.top_lp.clear();
  o.logits.clear();
  o.top_n = top;
  for (size_t k = 0; k < st.seq.size(); k++) {
    const size_t s = static_cast<size_t>(st.seq[k]);
    if (epoch_[s] != st.epoch[k]) continue;  // cancelled while in flight
    out->seq.push_back(st.seq[k]);
    if (!r) continue;
    o.ids.push_back(r->ids[k]);
    out->token.push_back(static_cast<int32_t>(r->ids[k]));
    o.logprob.push_back(r->logprob[k]);
    const size_t t = static_cast<size_t>(top);
    o.top_ids.insert(o.top_ids.end(), r->top_ids.begin() + static_cast<long>(k * t),
                     r->top_ids.begin() + static_cast<long>((k + 1) * t));
    o.top_lp.insert(o.top_lp.end(), r->top_lp.begin() + static_cast<long>(k * t),
                    r->top_lp.begin() + static_cast<long>((k + 1) * t));
    if (!r->logits.empty())
      o.logits.insert(o.logits.end(), r->logits.begin() + static_cast<long>(k * V),
                      r->logits.begin() + static_cast<long>((k + 1) * V));
  }
  for (auto& b : busy_)
    if (b == st.no) b = -1;
  steps_.pop_front();
}

void Model::wait(StepOut* out) {
  refuse_follower("wait");
  if (steps_.empty()) fail(TPPP_ERR_INVALID_USAGE, "wait: no step is in flight");
  retire(out);
}

bool Model::poll(StepOut* out) {
  refuse_follower("poll");
  if (!p_.follow && g_.config().world > 1)
    fail(TPPP_ERR_INVALID_USAGE,
         "poll: in every-rank mode the ranks would see steps land at different times and compose different next "
         "steps; call tppp_model_wait on every rank, or drive the model in follow mode");
  if (steps_.empty()) return false;
  Step& st = steps_.front();
  if (st.e && !st.e->test()) return false;
  retire(out);
  return true;
}

void Model::seq_rm(int32_t seq, int32_t p0, int32_t p1) {
  refuse_follower("seq_rm");
  if (leading() && stopped_) fail(TPPP_ERR_INVALID_USAGE, "seq_rm: the driver has stopped its followers");
  agree("seq_rm", {{"seq_id", fingerprint(&seq, 4)}, {"p0", fingerprint(&p0, 4)}, {"p1", fingerprint(&p1, 4)}});
  if (seq < 0 || seq >= book_.max_seqs())
    fail(TPPP_ERR_INVALID_ARGUMENT, "seq_rm: sequence %d is outside [0, max_seqs %d)", seq, book_.max_seqs());
  if (p0 < 0) p0 = 0;  // llama.h: p0 < 0 is from the start
  if (p1 >= 0 && p1 < p0)
    fail(TPPP_ERR_INVALID_ARGUMENT, "seq_rm: positions [%d, %d) of sequence %d: p1 must be >= p0 (or < 0: to the end)",
         p0, p1, seq);
  const int32_t len = book_.length(seq);
  if (p1 >= 0 && p1 < len && p1 > p0)
    fail(TPPP_ERR_NOT_SUPPORTED, "seq_rm: positions [%d, %d) are inside sequence %d (%d tokens): only a tail can go "
         "(p1 < 0 or >= its length), since a sequence's positions stay contiguous", p0, p1, seq, len);
  if (p0 >= len || p1 == p0) return;  // nothing to remove
  if (leading()) {
    Writer w;
    w.i32(seq);
    w.i32(p0);
    send_cmd(kCmdSeqRm, w.b);
  }
  forget(seq, p0);
}

void Model::seq_cp(int32_t src, int32_t dst, int32_t p0, int32_t p1) {
  refuse_follower("seq_cp");
  if (leading() && stopped_) fail(TPPP_ERR_INVALID_USAGE, "seq_cp: the driver has stopped its followers");
  agree("seq_cp", {{"seq_id_src", fingerprint(&src, 4)}, {"seq_id_dst", fingerprint(&dst, 4)},
                   {"p0", fingerprint(&p0, 4)}, {"p1", fingerprint(&p1, 4)}});
  if (src < 0 || src >= book_.max_seqs() || dst < 0 || dst >= book_.max_seqs())
    fail(TPPP_ERR_INVALID_ARGUMENT, "seq_cp: sequences %d -> %d: both must be in [0, max_seqs %d)", src, dst,
         book_.max_seqs());
  if (p0 > 0)
    fail(TPPP_ERR_NOT_SUPPORTED, "seq_cp: p0 %d: only a prefix can be shared (p0 <= 0), since positions stay "
         "contiguous", p0);
  const int32_t len = p1 < 0 ? book_.length(src) : p1;
  if (busy_[static_cast<size_t>(dst)] >= 0)
    fail(TPPP_ERR_INVALID_USAGE, "seq_cp: destination sequence %d is in step %lld, which is in flight", dst,
         static_cast<long long>(busy_[static_cast<size_t>(dst)]));
  share(src, dst, len);  // checks everything else before changing anything
  if (leading()) {
    Writer w;
    w.i32(src);
    w.i32(dst);
    w.i32(len);
    send_cmd(kCmdSeqCp, w.b);
  }
}

void Model::share(int32_t src, int32_t dst, int32_t len) {
  book_.share(src, dst, len);
  const size_t s = static_cast<size_t>(src), d = static_cast<size_t>(dst);
  hist_[d].assign(hist_[s].begin(), hist_[s].begin() + std::min<long>(len, static_cast<long>(hist_[s].size())));
  out_start_[d] = -1;
  epoch_[d]++;
}

void Model::run_cmd(int32_t op, const std::vector<char>& data) {
  Reader rd{data};
  if (op == kCmdSeqCp) {
    const int32_t src = rd.i32(), dst = rd.i32(), len = rd.i32();
    share(src, dst, len);  // throws FORMAT-worthy errors as the book's own (the driver checked the same book)
    return;
  }
  if (op == kCmdSeqRm) {
    const int32_t seq = rd.i32(), p0 = rd.i32();
    if (seq < 0 || seq >= book_.max_seqs()) fail(TPPP_ERR_FORMAT, "follow: seq_rm of sequence %d", seq);
    forget(seq, p0);
    return;
  }
  WireBatch wb;
  wb.read(&rd, p_.max_batch);
  const int32_t ns = rd.i32();
  if (ns != 0 && ns != wb.n)
    fail(TPPP_ERR_FORMAT, "follow: a submit command with %d sampling parameters for %d tokens", ns, wb.n);
  std::vector<SamplingParams> samp(static_cast<size_t>(ns));
  rd.get(samp.data(), samp.size() * sizeof(SamplingParams));
  const BatchView b{wb.n, wb.tok.data(), wb.pos.data(), wb.seq.data(), wb.has_want ? wb.want.data() : nullptr};
  check_step(b, samp);
  submit_here(b, samp, wb.outputs, check(b, wb.outputs));
}

}  // namespace tppp
