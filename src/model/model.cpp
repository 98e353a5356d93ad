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
  return parse_model_spec(c.config_json(), c.config_path());
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
  dec_.reset(new StageDecoder(g, c, spec_, dtype_, book_.num_pages(), p.page_size));
  TPPP_LOG(TPPP_LOG_INFO, "rank %d: %s, layers [%lld, %lld) of %lld, %d KV pages of %d tokens", g.config().rank,
           spec_.arch_name.c_str(), static_cast<long long>(dec_->layer_begin()),
           static_cast<long long>(dec_->layer_end()), static_cast<long long>(d.layers), book_.num_pages(),
           p.page_size);
}

bool Model::driver() const { return g_.config().rank == 0; }
int32_t Model::pp_rank() const { return g_.pos().pp_rank; }

int32_t Model::forward(const BatchView& b, int32_t outputs, float* logits, int64_t* ids) {
  return run(b, outputs, logits, ids, false);
}

int32_t Model::run(const BatchView& b, int32_t outputs, float* logits, int64_t* ids, bool ids_everywhere) {
  const auto t0 = Clock::now();
  if (outputs & ~(kOutLogits | kOutIds))
    fail(TPPP_ERR_INVALID_ARGUMENT, "forward: outputs %d is not a set of TPPP_OUT_* flags", outputs);
  if (b.n > p_.max_batch)
    fail(TPPP_ERR_INVALID_ARGUMENT, "batch: %d tokens, more than the model's max_batch %d", b.n, p_.max_batch);
  const KvPlan kv = book_.plan(b, spec_.dims.vocab);  // the same verdict on every rank, before any traffic
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
  const Place host = kHostPlace, dev{g_.mem_kind(), nullptr};
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
  if (!s.last()) {
    auto sh = tr.isend(pp, pp.me + 1, tags::model(call, tags::ModelMsg::Hidden), s.hidden(), act, dev);
    auto sr = tr.isend(pp, pp.me + 1, tags::model(call, tags::ModelMsg::Residual), s.residual(), act, dev);
    sh->wait();
    sr->wait();
  }
  // Results: computed on the last stage (logits on its TP rank 0), then
  // sent to the driver or broadcast.
  const int head_rank = (g_.config().pp - 1) * g_.config().tp;  // last stage, TP rank 0
  const bool head = g_.config().rank == head_rank;
  const bool want_ids = (outputs & kOutIds) || ids_everywhere;
  if (w > 0) {
    host_ids_.resize(static_cast<size_t>(w));
    if (outputs & kOutLogits) host_logits_.resize(static_cast<size_t>(w) * static_cast<size_t>(V));
    if (s.last()) {
      const auto th = Clock::now();
      // With logits, ids come from them (one LM head GEMM, not two).
      const bool logits_path = (outputs & kOutLogits) != 0;
      s.head(kv, logits_path, head ? host_logits_.data() : nullptr,
             logits_path ? nullptr : (want_ids ? host_ids_.data() : nullptr));
      if (logits_path && head && want_ids)
        for (int32_t r = 0; r < w; r++) {
          const float* row = host_logits_.data() + static_cast<size_t>(r) * static_cast<size_t>(V);
          int64_t best = 0;
          for (int64_t c = 1; c < V; c++)
            if (argmax_better(row[c], c, row[best], best)) best = c;
          host_ids_[static_cast<size_t>(r)] = best;
        }
      busy += ms_since(th);
    }
    if (head_rank != 0 && (outputs & kOutLogits)) {  // logits: head -> driver
      const size_t bytes = host_logits_.size() * 4;
      if (head) tr.isend(world, 0, tags::model(call, tags::ModelMsg::Logits), host_logits_.data(), bytes, host)->wait();
      if (driver()) tr.irecv(world, head_rank, tags::model(call, tags::ModelMsg::Logits), host_logits_.data(), bytes,
                             host)->wait();
    }
    if (ids_everywhere) {
      tr.broadcast(world, host_ids_.data(), static_cast<size_t>(w), TPPP_DTYPE_I64, head_rank, host);
    } else if (head_rank != 0 && (outputs & kOutIds)) {
      const size_t bytes = static_cast<size_t>(w) * 8;
      if (head) tr.isend(world, 0, tags::model(call, tags::ModelMsg::Ids), host_ids_.data(), bytes, host)->wait();
      if (driver())
        tr.irecv(world, head_rank, tags::model(call, tags::ModelMsg::Ids), host_ids_.data(), bytes, host)->wait();
    }
    if (driver()) {
      if ((outputs & kOutLogits) && logits) std::memcpy(logits, host_logits_.data(), host_logits_.size() * 4);
      if (want_ids && ids) std::memcpy(ids, host_ids_.data(), static_cast<size_t>(w) * 8);
    }
    if (ids_everywhere && ids && !driver()) std::memcpy(ids, host_ids_.data(), static_cast<size_t>(w) * 8);
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

void Model::remove(int32_t seq) { book_.remove(seq); }

void Model::generate(const std::vector<std::vector<int32_t>>& prompts, int32_t max_new,
                     const std::vector<int32_t>& stop, const std::function<void(int32_t, int32_t)>& on_token,
                     std::vector<std::vector<int32_t>>* tokens, float* first_logits) {
  const int32_t np = static_cast<int32_t>(prompts.size());
  if (np <= 0 || np > p_.max_seqs)
    fail(TPPP_ERR_INVALID_ARGUMENT, "generate: %d prompts (1 to max_seqs %d)", np, p_.max_seqs);
  if (max_new < 0) fail(TPPP_ERR_INVALID_ARGUMENT, "generate: max_new %d is negative", max_new);
  for (int32_t i = 0; i < np; i++) {
    if (prompts[static_cast<size_t>(i)].empty()) fail(TPPP_ERR_INVALID_ARGUMENT, "generate: prompt %d is empty", i);
    if (book_.length(i) != 0)
      fail(TPPP_ERR_INVALID_USAGE, "generate: sequence %d (prompt %d) already holds %d tokens; remove it first", i, i,
           book_.length(i));
  }
  std::vector<std::vector<int32_t>> out(static_cast<size_t>(np));
  std::vector<int32_t> last(static_cast<size_t>(np)), len(static_cast<size_t>(np));
  std::vector<char> live(static_cast<size_t>(np), max_new > 0 ? 1 : 0);
  std::vector<int32_t> tok, pos, seq;
  std::vector<int8_t> want;
  std::vector<int64_t> ids;
  std::vector<float> lg;
  try {
    // Prefill, in chunks of at most max_batch tokens; a prompt's last token wants its ids.
    std::vector<std::pair<int32_t, int32_t>> order;  // (prompt, position)
    for (int32_t i = 0; i < np; i++)
      for (int32_t k = 0; k < static_cast<int32_t>(prompts[static_cast<size_t>(i)].size()); k++) order.emplace_back(i, k);
    for (size_t at = 0; at < order.size();) {
      const size_t n = std::min(order.size() - at, static_cast<size_t>(p_.max_batch));
      tok.clear(); pos.clear(); seq.clear(); want.clear();
      std::vector<int32_t> owner;
      for (size_t k = at; k < at + n; k++) {
        const auto& pr = prompts[static_cast<size_t>(order[k].first)];
        tok.push_back(pr[static_cast<size_t>(order[k].second)]);
        pos.push_back(order[k].second);
        seq.push_back(order[k].first);
        const bool end = order[k].second + 1 == static_cast<int32_t>(pr.size());
        want.push_back(end ? 1 : 0);
        if (end) owner.push_back(order[k].first);
      }
      BatchView b{static_cast<int32_t>(n), tok.data(), pos.data(), seq.data(), want.data()};
      ids.assign(owner.size(), 0);
      // Logits on every rank's say-so (the same flags everywhere), whether
      // or not this driver keeps them: the prefill's LM head runs once anyway.
      lg.resize(owner.size() * static_cast<size_t>(spec_.dims.vocab));
      run(b, kOutIds | kOutLogits, lg.data(), ids.data(), true);
      for (size_t r = 0; r < owner.size(); r++) {
        const int32_t i = owner[r];
        if (first_logits && driver())
          std::memcpy(first_logits + static_cast<size_t>(i) * static_cast<size_t>(spec_.dims.vocab),
                      lg.data() + r * static_cast<size_t>(spec_.dims.vocab), static_cast<size_t>(spec_.dims.vocab) * 4);
        last[static_cast<size_t>(i)] = static_cast<int32_t>(ids[r]);
        len[static_cast<size_t>(i)] = static_cast<int32_t>(prompts[static_cast<size_t>(i)].size());
      }
      at += n;
    }
    // Decode: one token per live sequence per step; its sampled id is the next input.
    auto accept = [&](int32_t i) {
      const int32_t t = last[static_cast<size_t>(i)];
      out[static_cast<size_t>(i)].push_back(t);
      if (driver() && on_token) on_token(i, t);
      if (static_cast<int32_t>(out[static_cast<size_t>(i)].size()) >= max_new ||
          std::find(stop.begin(), stop.end(), t) != stop.end())
        live[static_cast<size_t>(i)] = 0;
    };
    for (int32_t i = 0; i < np; i++)
      if (live[static_cast<size_t>(i)]) accept(i);
    for (;;) {
      tok.clear(); pos.clear(); seq.clear(); want.clear();
      for (int32_t i = 0; i < np; i++)
        if (live[static_cast<size_t>(i)]) {
          tok.push_back(last[static_cast<size_t>(i)]);
          pos.push_back(len[static_cast<size_t>(i)]++);
          seq.push_back(i);
          want.push_back(1);
        }
      if (tok.empty()) break;
      BatchView b{static_cast<int32_t>(tok.size()), tok.data(), pos.data(), seq.data(), want.data()};
      ids.assign(tok.size(), 0);
      run(b, kOutIds, nullptr, ids.data(), true);
      for (size_t r = 0; r < tok.size(); r++) last[static_cast<size_t>(seq[r])] = static_cast<int32_t>(ids[r]);
      for (size_t r = 0; r < tok.size(); r++) accept(seq[r]);
    }
  } catch (...) {
    for (int32_t i = 0; i < np; i++) book_.remove(i);
    throw;
  }
  for (int32_t i = 0; i < np; i++) book_.remove(i);
  if (tokens) *tokens = std::move(out);
}

}  // namespace tppp
