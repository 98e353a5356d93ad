// Model: batch planning, the stage-to-stage hand-over, results to the driver
// and greedy generation (see the header).
#include "model/model.hpp"

#include <algorithm>
#include <chrono>
#include <cstring>

#include "core/dtype.hpp"
#include "core/error.hpp"
#include "core/log.hpp"
#include "group/group.hpp"
#include "transport/tags.hpp"

namespace tppp {
namespace {

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

ModelSpec spec_of(const Checkpoint& c) {
  if (c.config_json().empty())
    fail(TPPP_ERR_INVALID_ARGUMENT, "%s: the model runtime needs config.json beside the weights", c.path().c_str());
  ModelSpec s = parse_model_spec(c.config_json(), c.config_path());
  if (!c.gen_config_json().empty()) {  // transformers: generation_config.json's eos_token_id wins
    std::vector<int32_t> eos = parse_eos_ids(c.gen_config_json(), c.gen_config_path(), s.dims.vocab);
    if (!eos.empty()) s.eos = std::move(eos);
  }
  return s;
}

int32_t dtype_of(const Checkpoint& c, int32_t asked) {
  if (asked >= 0) {
    if (!dtype_is_float(asked))
      fail(TPPP_ERR_INVALID_ARGUMENT, "model params: dtype %d is not F32, F16 or BF16", asked);
    return asked;
  }
  const TensorRef* t = c.find("model.embed_tokens.weight");
  if (!t) fail(TPPP_ERR_FORMAT, "%s: no model.embed_tokens.weight", c.path().c_str());
  return dtype_is_float(t->t->dtype) ? t->t->dtype : TPPP_DTYPE_F32;
}

int32_t pages_for(const ModelParams& p) {
  if (p.page_size <= 0 || p.kv_tokens <= 0 || p.max_seqs <= 0 || p.max_batch <= 0)
    fail(TPPP_ERR_INVALID_ARGUMENT, "model params: page_size %d, kv_tokens %lld, max_seqs %d and max_batch %d must be > 0",
         p.page_size, static_cast<long long>(p.kv_tokens), p.max_seqs, p.max_batch);
  const int64_t pages = (p.kv_tokens + p.page_size - 1) / p.page_size;
  if (pages > (int64_t(1) << 30) / p.page_size)
    fail(TPPP_ERR_INVALID_ARGUMENT, "model params: kv_tokens %lld is too large", static_cast<long long>(p.kv_tokens));
  return static_cast<int32_t>(pages);
}

}  // namespace

Model::Model(Group& g, const Checkpoint& c, const ModelParams& p)
    : g_(g), p_(p), spec_(spec_of(c)), dtype_(dtype_of(c, p.dtype)), book_(pages_for(p), p.page_size, p.max_seqs) {
  const ModelConfig& d = spec_.dims;
  const int tp = g.config().tp, pp = g.config().pp;
  if (d.heads % tp != 0)
    fail(TPPP_ERR_INVALID_ARGUMENT, "%s: num_attention_heads %lld is not divisible by tp %d", c.config_path().c_str(),
         static_cast<long long>(d.heads), tp);
  if (d.kv_heads >= tp ? d.kv_heads % tp != 0 : tp % d.kv_heads != 0)
    fail(TPPP_ERR_INVALID_ARGUMENT, "%s: num_key_value_heads %lld neither divides over nor replicates across tp %d",
         c.config_path().c_str(), static_cast<long long>(d.kv_heads), tp);
  if (d.layers < pp)
    fail(TPPP_ERR_INVALID_ARGUMENT, "%s: %lld layers cannot fill %d pipeline stages", c.config_path().c_str(),
         static_cast<long long>(d.layers), pp);
  if (d.head_dim % 2 != 0)
    fail(TPPP_ERR_NOT_SUPPORTED, "%s: head_dim %lld is odd (RoPE pairs halves)", c.config_path().c_str(),
         static_cast<long long>(d.head_dim));
  if (p.max_inflight < 0)
    fail(TPPP_ERR_INVALID_ARGUMENT, "model params: max_inflight %d must be >= 0 (0: the number of stages)",
         p.max_inflight);
  if (p_.max_inflight == 0) p_.max_inflight = pp;
  dec_.reset(new StageDecoder(g, c, spec_, dtype_, book_.num_pages(), p.page_size, p.max_batch, p.layer_split));
  hist_.resize(static_cast<size_t>(p.max_seqs));
  out_start_.assign(static_cast<size_t>(p.max_seqs), -1);
  epoch_.assign(static_cast<size_t>(p.max_seqs), 0);
  busy_.assign(static_cast<size_t>(p.max_seqs), -1);
  TPPP_LOG(TPPP_LOG_INFO, "rank %d: %s, layers [%lld, %lld) of %lld, %d KV pages of %d tokens", g.config().rank,
           spec_.arch_name.c_str(), static_cast<long long>(dec_->layer_begin()),
           static_cast<long long>(dec_->layer_end()), static_cast<long long>(d.layers), book_.num_pages(),
           p.page_size);
}

bool Model::driver() const { return g_.config().rank == 0; }

Stream& Model::stream() {
  if (!stream_) stream_.reset(new Stream(*this));
  return *stream_;
}

void Model::forget(int32_t seq, int32_t p0) {
  const size_t s = static_cast<size_t>(seq);
  if (p0 <= 0) {
    book_.remove(seq);
    hist_[s].clear();
    out_start_[s] = -1;
  } else {
    book_.truncate(seq, p0);
    if (hist_[s].size() > static_cast<size_t>(p0)) hist_[s].resize(static_cast<size_t>(p0));
    if (out_start_[s] > p0) out_start_[s] = -1;
  }
  epoch_[s]++;
  busy_[s] = -1;
}

void Model::note_tokens(const BatchView& b) {
  if (!dec_->last()) return;
  for (int32_t t = 0; t < b.n; t++) {
    std::vector<int32_t>& h = hist_[static_cast<size_t>(b.seq[t])];
    h.resize(static_cast<size_t>(b.pos[t]));  // positions are contiguous (the plan checked): a no-op
    h.push_back(b.token[t]);
  }
}

TokenHistory Model::history(int32_t seq, int32_t pos) {
  const size_t s = static_cast<size_t>(seq);
  if (out_start_[s] < 0) out_start_[s] = pos + 1;  // the sequence's first draw: its output starts here
  const std::vector<int32_t>& h = hist_[s];
  return TokenHistory{h.data(), std::min<int64_t>(static_cast<int64_t>(h.size()), pos + 1), out_start_[s]};
}

Draw Model::sample(const SamplingParams& p, const float* logits, int32_t seq, int32_t pos,
                   std::vector<float>* scratch) {
  return sample_row(logits, spec_.dims.vocab, p, history(seq, pos), pos + 1, scratch);
}
int32_t Model::pp_rank() const { return g_.pos().pp_rank; }

void Model::head_ids(const KvPlan& kv, bool want_logits, float* logits, int64_t* ids) {
  StageDecoder& s = *dec_;
  const int64_t w = static_cast<int64_t>(kv.wanted.size()), V = spec_.dims.vocab;
  if (w == 0) return;
  if (!want_logits) {
    s.head(kv, false, nullptr, ids);
    return;
  }
  const bool root = g_.pos().tp_rank == 0;
  s.head(kv, true, root ? logits : nullptr, nullptr);
  if (root)
    for (int64_t r = 0; r < w; r++) {
      const float* row = logits + static_cast<size_t>(r) * static_cast<size_t>(V);
      int64_t best = 0;
      for (int64_t c = 1; c < V; c++)
        if (argmax_better(row[c], c, row[best], best)) best = c;
      ids[r] = best;
    }
  if (g_.config().tp > 1)
    g_.transport().broadcast(g_.comm(TPPP_SCOPE_TP), ids, static_cast<size_t>(w), TPPP_DTYPE_I64, 0, kHostPlace);
}

KvPlan Model::check(const BatchView& b, int32_t outputs) const {
  if (outputs & ~(kOutLogits | kOutIds))
    fail(TPPP_ERR_INVALID_ARGUMENT, "forward: outputs %d is not a set of TPPP_OUT_* flags", outputs);
  if (b.n > p_.max_batch)
    fail(TPPP_ERR_INVALID_ARGUMENT, "batch: %d tokens, more than the model's max_batch %d", b.n, p_.max_batch);
  return book_.plan(b, spec_.dims.vocab);
}

int32_t Model::run(const BatchView& b, const KvPlan& kv, int32_t outputs, float* logits, int64_t* ids) {
  const auto t0 = Clock::now();
  const uint32_t call = calls_++;
  const int32_t w = static_cast<int32_t>(kv.wanted.size());
  const int64_t V = spec_.dims.vocab;
  // Only the driver knows its buffers: a missing one must not leave the other
  // ranks waiting, so the batch runs everywhere and the driver fails after.
  const char* missing = !driver() || w == 0                     ? nullptr
                        : (outputs & kOutLogits) && !logits     ? "logits"
                        : (outputs & kOutIds) && !ids           ? "ids"
                                                                : nullptr;
  Transport& tr = g_.transport();
  const Comm& pp = g_.comm(TPPP_SCOPE_PP);
  const Comm& world = g_.comm(TPPP_SCOPE_WORLD);
  const Place host = kHostPlace, dev{g_.mem_kind(), dec_->stream()};  // hand-overs in the stage's stream order
  const size_t act = static_cast<size_t>(b.n) * dec_->row_bytes();
  StageDecoder& s = *dec_;
  s.prepare(b, kv);
  double busy = 0;  // this rank's compute (embed, layers, head), not its waits
  auto timed = [&busy](auto&& f) {
    const auto tb = Clock::now();
    f();
    busy += ms_since(tb);
  };
  if (s.first()) {
    timed([&] { s.embed(b); });
  } else {
    auto rh = tr.irecv(pp, pp.me - 1, tags::model(call, tags::ModelMsg::Hidden), s.hidden(), act, dev);
    auto rr = tr.irecv(pp, pp.me - 1, tags::model(call, tags::ModelMsg::Residual), s.residual(), act, dev);
    rh->wait();
    rr->wait();
  }
  timed([&] { s.run_layers(b.n, !s.first()); });
  note_tokens(b);
  if (!s.last()) {
    auto sh = tr.isend(pp, pp.me + 1, tags::model(call, tags::ModelMsg::Hidden), s.hidden(), act, dev);
    auto sr = tr.isend(pp, pp.me + 1, tags::model(call, tags::ModelMsg::Residual), s.residual(), act, dev);
    sh->wait();
    sr->wait();
  }
  // Results: computed on the last stage (logits on its TP rank 0), then
  // sent to the driver.
  const int head_rank = (g_.config().pp - 1) * g_.config().tp;  // last stage, TP rank 0
  const bool head = g_.config().rank == head_rank;
  if (w > 0) {
    host_ids_.resize(static_cast<size_t>(w));
    if (outputs & kOutLogits) host_logits_.resize(static_cast<size_t>(w) * static_cast<size_t>(V));
    if (s.last()) timed([&] { head_ids(kv, (outputs & kOutLogits) != 0, head ? host_logits_.data() : nullptr, host_ids_.data()); });
    const tags::ModelMsg kinds[2] = {tags::ModelMsg::Logits, tags::ModelMsg::Ids};
    for (int k = 0; k < 2 && head_rank != 0; k++) {  // head -> driver
      if (!(outputs & (k == 0 ? kOutLogits : kOutIds))) continue;
      void* buf = k == 0 ? static_cast<void*>(host_logits_.data()) : static_cast<void*>(host_ids_.data());
      const size_t bytes = k == 0 ? host_logits_.size() * 4 : static_cast<size_t>(w) * 8;
      if (head) tr.isend(world, 0, tags::model(call, kinds[k]), buf, bytes, host)->wait();
      if (driver()) tr.irecv(world, head_rank, tags::model(call, kinds[k]), buf, bytes, host)->wait();
    }
    if (driver()) {
      if ((outputs & kOutLogits) && logits) std::memcpy(logits, host_logits_.data(), host_logits_.size() * 4);
      if ((outputs & kOutIds) && ids) std::memcpy(ids, host_ids_.data(), static_cast<size_t>(w) * 8);
    }
  }
  book_.commit(kv);
  st_.busy_ms += busy;
  st_.wall_ms += ms_since(t0);
  st_.tokens += b.n;
  if (missing)
    fail(TPPP_ERR_INVALID_ARGUMENT,
         "forward: the driver asked for %s but passed NULL; the batch ran on every rank (its tokens are in the "
         "cache), its %s are lost", missing, missing);
  return w;
}

}  // namespace tppp
