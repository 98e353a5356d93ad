// StageDecoder: weights of this stage and TP rank, and the per-layer forward
// (see the header). Every op goes through the Backend; every collective
// through the TP layers.
#include "model/decoder.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "core/dtype.hpp"
#include "core/env.hpp"
#include "core/error.hpp"
#include "core/hash.hpp"
#include "core/host_heap.hpp"
#include "core/trace.hpp"
#include "group/group.hpp"
#include "model/bind.hpp"

namespace tppp {

DevBuf::~DevBuf() {
  if (p_) be_->free(p_);
}

void* DevBuf::get(Backend& be, size_t bytes) {
  if (bytes <= n_ && p_) return p_;
  if (p_) be_->free(p_);
  p_ = nullptr;
  n_ = 0;
  be_ = &be;
  p_ = be.alloc(bytes ? bytes : 1);
  n_ = bytes;
  return p_;
}

namespace {
std::string layer_prefix(int64_t i) { return "model.layers." + std::to_string(i) + "."; }
}  // namespace

StageDecoder::StageDecoder(Group& g, const Checkpoint& c, const ModelSpec& spec, int32_t dtype, int32_t num_pages,
                           int32_t page_size, int32_t max_rows, const std::vector<int64_t>& split)
    : g_(g), spec_(spec), be_(g.backend()), dt_(dtype), page_size_(page_size) {
  const ModelConfig& d = spec.dims;
  tp_ = g.config().tp;
  hq_ = d.heads / tp_;
  kvr_ = d.kv_heads >= tp_ ? d.kv_heads / tp_ : 1;
  hd_ = d.head_dim;
  qkv_cols_ = (hq_ + 2 * kvr_) * hd_;
  const int pp = g.config().pp, stage = g.pos().pp_rank;
  first_ = stage == 0;
  last_ = stage == pp - 1;
  // The host's split, else one that evens out the stages' weight bytes (a
  // decode step reads them all): the LM head weighs vocab x hidden on the
  // last stage (issue 23: an even 15 + 15 split of SmolLM2-135M left its
  // last stage busy 20.0 s against 15.0 s on stage 0).
  split_ = split;
  if (split_.empty() && pp > 1) {
    const double layer = static_cast<double>(d.hidden) * static_cast<double>((d.heads + 2 * d.kv_heads) * d.head_dim) +
                         static_cast<double>(d.heads * d.head_dim) * static_cast<double>(d.hidden) +
                         3.0 * static_cast<double>(d.hidden) * static_cast<double>(d.intermediate);
    split_ = balanced_layer_split(d.layers, pp, layer, 0.0, static_cast<double>(d.vocab) * static_cast<double>(d.hidden));
  }
  const auto ranges = pp_layer_ranges(d.layers, pp, split_);
  begin_ = ranges[static_cast<size_t>(stage)].first;
  end_ = ranges[static_cast<size_t>(stage)].second;

  // The layers first, then their weights: on a CUDA group this rank's whole
  // share in one device allocation, read and uploaded in parallel, bound in
  // place (bind.hpp); elsewhere module by module from the checkpoint.
  std::vector<LayerModule> mods;
  LayerSpec ls;
  ls.dtype = dtype;
  if (first_) {
    ls.kind = LayerKind::Embedding;
    ls.in = d.hidden;
    ls.vocab = d.vocab;
    embed_ = make_layer(g, ls);
    mods.push_back({embed_.get(), "model.embed_tokens"});
  }
  if (last_) {
    ls = LayerSpec();
    ls.dtype = dtype;
    ls.kind = LayerKind::LmHead;
    ls.in = d.hidden;
    ls.vocab = d.vocab;
    ls.gather_to_rank0 = true;
    lm_head_ = make_layer(g, ls);
    mods.push_back({lm_head_.get(), "lm_head"});
  }
  // CUDA: one page more than the book hands out, where the padding rows of a
  // CUDA-graph bucket write their K/V (never read by a real token).
  const bool cuda = be_->mem_kind() == TPPP_MEM_CUDA;
  num_pages_ = num_pages;
  const size_t cache_bytes = static_cast<size_t>(num_pages + (cuda ? 1 : 0)) * static_cast<size_t>(page_size) *
                             static_cast<size_t>(kvr_ * hd_) * dtype_size(dtype);
  layers_.resize(static_cast<size_t>(end_ - begin_));
  for (int64_t i = begin_; i < end_; i++) {
    Layer& L = layers_[static_cast<size_t>(i - begin_)];
    const std::string p = layer_prefix(i);
    LayerSpec q;
    q.dtype = dtype;
    q.kind = LayerKind::Qkv;
    q.in = d.hidden;
    q.heads = d.heads;
    q.kv_heads = d.kv_heads;
    q.head_dim = d.head_dim;
    q.bias = spec.qkv_bias;
    L.qkv = make_layer(g, q);
    mods.push_back({L.qkv.get(), p + "self_attn"});
    LayerSpec o;
    o.dtype = dtype;
    o.kind = LayerKind::Row;
    o.in = d.heads * d.head_dim;
    o.out = d.hidden;
    o.input_is_parallel = true;
    o.bias = spec.o_bias;
    L.o = make_layer(g, o);
    mods.push_back({L.o.get(), p + "self_attn.o_proj"});
    LayerSpec m;
    m.dtype = dtype;
    m.kind = LayerKind::Mlp;
    m.in = d.hidden;
    m.out = d.intermediate;
    L.mlp = make_layer(g, m);
    mods.push_back({L.mlp.get(), p + "mlp"});
  }
  if (cuda) weights_ = load_rank_device(g, c, dtype, mods, split_);
  for (const LayerModule& lm : mods)
    if (!weights_ || !bind_in_place(*lm.layer, *weights_, lm.prefix)) bind_checkpoint(*lm.layer, c, lm.prefix, split_);
  // A replicated vector (norm weight): in place from the device share, else uploaded.
  auto vec = [&](const std::string& name) -> void* {
    if (weights_)
      if (const WeightEntry* e = weights_->find(name))
        if (e->dtype == dtype) return e->data;
    return upload(load_whole(c, g, name, dtype, split_));
  };
  if (last_) final_norm_ = vec("model.norm.weight");
  for (int64_t i = begin_; i < end_; i++) {
    Layer& L = layers_[static_cast<size_t>(i - begin_)];
    const std::string p = layer_prefix(i);
    L.in_norm = vec(p + "input_layernorm.weight");
    L.post_norm = vec(p + "post_attention_layernorm.weight");
    if (spec.qk_norm) {
      L.q_norm = vec(p + "self_attn.q_norm.weight");
      L.k_norm = vec(p + "self_attn.k_norm.weight");
    }
    L.k_cache = be_->alloc(cache_bytes);
    owned_.push_back(L.k_cache);
    L.v_cache = be_->alloc(cache_bytes);
    owned_.push_back(L.v_cache);
  }
  const std::vector<float> f = rope_inv_freq(spec.rope, hd_);
  inv_freq_ = be_->alloc(f.size() * 4);
  owned_.push_back(inv_freq_);
  be_->copy(inv_freq_, f.data(), f.size() * 4, nullptr);
  be_->sync(nullptr);
  // The loader's buffers (a module's slices, freed once bound) would stay in
  // the C heap; give them back, so the process holds the weights, not twice.
  trim_host_heap();
  if (cuda) {
    // A blocking stream: ordered against the legacy default stream (hosts,
    // the transports' stream-less waits), and capturable, which that is not.
    st_ = be_->stream_create(true);
    // Graphs of the decode step: one stage (PP = 1) and TP collectives that
    // are queued on the stream (NCCL) or none; UCX staging waits on the host.
    graphs_ = env_flag(Env::CudaGraphs) && pp == 1 &&
              (tp_ == 1 || g.transport().stream_ordered(Place{TPPP_MEM_CUDA, st_}));
    // A batch has at most max_rows rows (a padded graph batch kGraphMaxRows),
    // one run each at most; its runs list each page once, a padding run the
    // scratch page: the attention plan's arrays are sized here once.
    const int64_t rows = std::max<int64_t>(max_rows, kGraphMaxRows);
    be_->attention_reserve(rows, static_cast<int64_t>(num_pages_) + 1 + rows);
  }
}

StageDecoder::~StageDecoder() {
  if (st_) {
    try {
      be_->sync(st_);
    } catch (const Error&) {  // a stuck device: free anyway
    }
  }
  for (auto& kv : graph_) be_->graph_destroy(kv.second.exec);
  for (void* p : owned_) be_->free(p);
  if (st_) be_->stream_destroy(st_);
}

void* StageDecoder::upload(const HostTensor& t) {
  void* p = be_->alloc(t.bytes.size());
  owned_.push_back(p);
  be_->copy(p, t.bytes.data(), t.bytes.size(), nullptr);
  be_->sync(nullptr);
  return p;
}

size_t StageDecoder::row_bytes() const { return static_cast<size_t>(spec_.dims.hidden) * dtype_size(dt_); }

tppp_tensor StageDecoder::tensor(void* p, int32_t dtype, int64_t rows, int64_t cols) const {
  tppp_tensor t{};
  t.data = p;
  t.mem_kind = be_->mem_kind();
  t.device = g_.config().device;
  t.dtype = dtype;
  t.ndim = cols > 0 ? 2 : 1;
  t.shape[0] = rows;
  if (cols > 0) t.shape[1] = cols;
  return t;
}

void StageDecoder::prepare(const BatchView& b, const KvPlan& kv) {
  n_ = b.n;
  AttnRuns runs = attn_runs(kv, b.n, page_size_);
  // A decode batch (one token per sequence) of at most kGraphMaxRows runs as
  // the CUDA graph of its bucket (the next power of two): rows n.. are
  // padding, writing the scratch KV page and attending to it alone.
  graph_rows_ = 0;
  const KvPlan* k = &kv;
  KvPlan padded;
  if (graphs_ && runs.decode && b.n <= kGraphMaxRows) {
    int64_t B = 1;
    while (B < b.n) B *= 2;
    graph_rows_ = B;
    if (B > b.n) {
      padded = pad_rows(kv, static_cast<int32_t>(B), num_pages_, page_size_);
      k = &padded;
      runs = attn_runs(padded, static_cast<int32_t>(B), page_size_);
    }
  }
  const int64_t rows = graph_rows_ > 0 ? graph_rows_ : b.n;
  const size_t n = static_cast<size_t>(rows), es = dtype_size(dt_);
  hidden_.get(*be_, n * row_bytes());
  residual_.get(*be_, n * row_bytes());
  normed_.get(*be_, n * row_bytes());
  qkv_.get(*be_, n * static_cast<size_t>(qkv_cols_) * es);
  attn_.get(*be_, n * static_cast<size_t>(hq_ * hd_) * es);
  // Index arrays: sized once for the largest batch and all pages (+ scratch),
  // so their addresses stay put for graphs.
  auto up = [&](DevBuf& buf, const int32_t* src, size_t count, size_t cap) {
    void* p = buf.get(*be_, std::max(count, cap) * 4);
    be_->copy(p, src, count * 4, st_);
  };
  const size_t cap = graphs_ ? static_cast<size_t>(kGraphMaxRows) : 0;
  std::vector<int32_t> pos(b.pos, b.pos + b.n);
  pos.resize(n, 0);
  up(pos_, pos.data(), n, cap);
  up(slot_, k->slot.data(), n, cap);
  up(kv_len_, k->kv_len.data(), n, cap);
  up(page_off_, k->page_off.data(), n, cap);
  up(pages_, k->pages.data(), k->pages.size(), graphs_ ? static_cast<size_t>(num_pages_) + 1 : 0);
  if (first_) up(ids_, b.token, static_cast<size_t>(b.n), cap);
  be_->attention_plan(runs, rows, hq_, kvr_, hd_, page_size_, dt_, st_, graph_rows_ > 0);
}

void StageDecoder::embed(const BatchView& b) {
  tppp_tensor x = tensor(ids_.data(), TPPP_DTYPE_I32, b.n, 0), y = tensor(hidden_.data(), dt_, b.n, spec_.dims.hidden);
  embed_->forward(x, &y, st_);
}

void StageDecoder::attention_block(Layer& L, int64_t n) {
  const float eps = static_cast<float>(spec_.rms_eps);
  char* qkv = static_cast<char*>(qkv_.data());
  const size_t es = dtype_size(dt_);
  char* k = qkv + static_cast<size_t>(hq_ * hd_) * es;
  char* v = k + static_cast<size_t>(kvr_ * hd_) * es;
  tppp_tensor x = tensor(normed_.data(), dt_, n, spec_.dims.hidden), y = tensor(qkv, dt_, n, qkv_cols_);
  L.qkv->forward(x, &y, st_);
  if (spec_.qk_norm) {
    be_->head_rms_norm(qkv, n, hq_, hd_, qkv_cols_, L.q_norm, eps, dt_, st_);
    be_->head_rms_norm(k, n, kvr_, hd_, qkv_cols_, L.k_norm, eps, dt_, st_);
  }
  const int32_t* pos = static_cast<const int32_t*>(pos_.data());
  const float* f = static_cast<const float*>(inv_freq_);
  be_->rope(qkv, n, hq_, hd_, qkv_cols_, pos, f, dt_, st_);
  be_->rope(k, n, kvr_, hd_, qkv_cols_, pos, f, dt_, st_);
  be_->kv_write(k, v, qkv_cols_, n, kvr_, hd_, static_cast<const int32_t*>(slot_.data()), L.k_cache, L.v_cache, dt_,
                st_);
  be_->attention(qkv, qkv_cols_, n, hq_, kvr_, hd_, L.k_cache, L.v_cache, page_size_,
                 static_cast<const int32_t*>(kv_len_.data()), static_cast<const int32_t*>(page_off_.data()),
                 static_cast<const int32_t*>(pages_.data()), 1.0f / std::sqrt(static_cast<float>(hd_)), attn_.data(),
                 dt_, st_);
  tppp_tensor a = tensor(attn_.data(), dt_, n, hq_ * hd_), h = tensor(hidden_.data(), dt_, n, spec_.dims.hidden);
  L.o->forward(a, &h, st_);
}

uint64_t StageDecoder::graph_signature() const {
  Fnv1a h;  // every address and shape a captured step bakes in
  for (const DevBuf* b : {&hidden_, &residual_, &normed_, &qkv_, &attn_, &pos_, &slot_, &kv_len_, &page_off_, &pages_})
    h.value(b->data());
  h.value(be_->attention_signature());
  for (const Layer& L : layers_)
    for (const TpLayer* t : {L.qkv.get(), L.o.get(), L.mlp.get()}) h.value(t->scratch_epoch());
  return h.get();
}

void StageDecoder::run_layers(int64_t n, bool residual_started) {
  TraceRange stage("stage %d: %lld tokens", g_.pos().pp_rank, static_cast<long long>(n));
  if (graph_rows_ == 0) return layers(n, residual_started);
  // The decode step as a CUDA graph of its bucket: the first batch of a
  // bucket runs eagerly (scratch and GEMM plans grow to it), the second is
  // captured, and later ones replay while nothing it baked in has moved.
  const int64_t B = graph_rows_;
  Graph& G = graph_[std::make_pair(B, residual_started)];
  const uint64_t sig = graph_signature();
  if (G.exec && G.sig == sig) {
    be_->graph_launch(G.exec, st_);
    graph_replays_++;
    return;
  }
  if (!G.warm) {
    G.warm = true;
    return layers(B, residual_started);
  }
  be_->graph_destroy(G.exec);
  G.exec = nullptr;
  be_->graph_begin(st_);
  try {
    layers(B, residual_started);
  } catch (...) {
    be_->graph_end(st_, false);
    throw;
  }
  G.exec = be_->graph_end(st_, true);
  G.sig = sig;
  graph_captures_++;
  be_->graph_launch(G.exec, st_);  // capture queued nothing: run it
}

void StageDecoder::layers(int64_t n, bool residual_started) {
  const float eps = static_cast<float>(spec_.rms_eps);
  const int64_t H = spec_.dims.hidden;
  for (size_t i = 0; i < layers_.size(); i++) {
    TraceRange tr("layer %lld", static_cast<long long>(begin_) + static_cast<long long>(i));
    Layer& L = layers_[i];
    if (!residual_started) {  // the model's first layer: residual = embeddings
      be_->copy(residual_.data(), hidden_.data(), static_cast<size_t>(n) * row_bytes(), st_);
      be_->rms_norm(hidden_.data(), nullptr, L.in_norm, normed_.data(), n, H, eps, dt_, st_);
      residual_started = true;
    } else {
      be_->rms_norm(hidden_.data(), residual_.data(), L.in_norm, normed_.data(), n, H, eps, dt_, st_);
    }
    attention_block(L, n);
    be_->rms_norm(hidden_.data(), residual_.data(), L.post_norm, normed_.data(), n, H, eps, dt_, st_);
    tppp_tensor x = tensor(normed_.data(), dt_, n, H), y = tensor(hidden_.data(), dt_, n, H);
    L.mlp->forward(x, &y, st_);
  }
}

const void* StageDecoder::final_rows(const KvPlan& kv) {
  const int64_t H = spec_.dims.hidden, w = static_cast<int64_t>(kv.wanted.size());
  const float eps = static_cast<float>(spec_.rms_eps);
  // The wanted rows only: norm(residual += hidden) of each, gathered.
  char* x = static_cast<char*>(wanted_x_.get(*be_, static_cast<size_t>(w) * 3 * row_bytes()));
  char* xh = x + static_cast<size_t>(w) * row_bytes();
  char* xr = xh + static_cast<size_t>(w) * row_bytes();
  bool leading = true;  // rows 0..w-1 (every decode step): in place, no gather
  for (int64_t r = 0; r < w && leading; r++) leading = kv.wanted[static_cast<size_t>(r)] == r;
  if (leading) {  // the batch is done with hidden and residual: the norm may update them in place
    xh = static_cast<char*>(hidden_.data());
    xr = static_cast<char*>(residual_.data());
  } else {
    for (int64_t r = 0; r < w; r++) {
      const size_t src = static_cast<size_t>(kv.wanted[static_cast<size_t>(r)]) * row_bytes();
      be_->copy(xh + r * row_bytes(), static_cast<char*>(hidden_.data()) + src, row_bytes(), st_);
      be_->copy(xr + r * row_bytes(), static_cast<char*>(residual_.data()) + src, row_bytes(), st_);
    }
  }
  be_->rms_norm(xh, xr, final_norm_, x, w, H, eps, dt_, st_);
  return x;
}

void StageDecoder::head_local(const KvPlan& kv, std::vector<float>* out, int64_t* per, int64_t* c0, int64_t* valid) {
  TraceRange tr("lm head (local)");
  const int64_t w = static_cast<int64_t>(kv.wanted.size());
  if (w == 0) return;
  const void* x = final_rows(kv);
  const void* y = lm_head_->local_logits(x, w, per, c0, valid, st_);
  const size_t n = static_cast<size_t>(w * *per);
  out->resize(n);
  if (dt_ == TPPP_DTYPE_F32) {
    be_->copy(out->data(), y, n * 4, st_);
  } else {
    void* f = f32_scratch_.get(*be_, n * 4);
    be_->convert(y, dt_, f, TPPP_DTYPE_F32, n, st_);
    be_->copy(out->data(), f, n * 4, st_);
  }
  be_->sync(st_);
}

void StageDecoder::head(const KvPlan& kv, bool want_logits, float* logits, int64_t* ids) {
  TraceRange tr("lm head");
  const int64_t H = spec_.dims.hidden, V = spec_.dims.vocab, w = static_cast<int64_t>(kv.wanted.size());
  if (w == 0) return;
  tppp_tensor xt = tensor(const_cast<void*>(final_rows(kv)), dt_, w, H);
  if (want_logits) {
    const bool root = g_.pos().tp_rank == 0;
    void* y = root ? logits_.get(*be_, static_cast<size_t>(w * V) * dtype_size(dt_)) : nullptr;
    tppp_tensor yt = tensor(y, dt_, w, V);
    lm_head_->forward(xt, root ? &yt : nullptr, st_);
    if (root && logits) {
      if (dt_ == TPPP_DTYPE_F32) {
        be_->copy(logits, y, static_cast<size_t>(w * V) * 4, st_);
      } else {  // f32 on the host: convert in backend memory, then copy
        void* f = f32_scratch_.get(*be_, static_cast<size_t>(w * V) * 4);
        be_->convert(y, dt_, f, TPPP_DTYPE_F32, static_cast<size_t>(w * V), st_);
        be_->copy(logits, f, static_cast<size_t>(w * V) * 4, st_);
      }
      be_->sync(st_);
    }
  }
  if (ids) {
    void* d = f32_scratch_.get(*be_, static_cast<size_t>(w) * 8);
    tppp_tensor it = tensor(d, TPPP_DTYPE_I64, w, 0);
    lm_head_->argmax(xt, it, st_);
    be_->copy(ids, d, static_cast<size_t>(w) * 8, st_);
    be_->sync(st_);
  }
}

}  // namespace tppp
