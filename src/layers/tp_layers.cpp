// TP layer forward passes over a Backend and the group's TP transport.
#include "layers/tp_layers.hpp"

#include <algorithm>
#include <cstring>

#include "core/dtype.hpp"
#include "core/error.hpp"
#include "core/group.hpp"
#include "loader/checkpoint.hpp"

namespace tppp {

struct TpLayer::Part {
  std::unique_ptr<PackedWeight> w;   // GEMM kinds
  void* table = nullptr;             // EMBEDDING: rows in backend memory
  void* bias = nullptr;              // backend memory, layer dtype
  int64_t n = 0, k = 0;
};

namespace {

const char* kind_name(LayerKind k) {
  static const char* names[] = {"COLUMN", "ROW", "REPLICATED", "GATE_UP", "QKV", "EMBEDDING", "LM_HEAD", "MLP"};
  return names[static_cast<int>(k)];
}

void need(bool ok, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
void need(bool ok, const char* fmt, ...) {
  if (ok) return;
  va_list ap;
  va_start(ap, fmt);
  std::string m = vstrf(fmt, ap);
  va_end(ap);
  throw Error(TPPP_ERR_INVALID_ARGUMENT, m);
}


std::vector<int64_t> shape_of(const tppp_tensor& t) { return std::vector<int64_t>(t.shape, t.shape + t.ndim); }

int64_t kv_local(const LayerSpec& s, int tp) { return s.kv_heads >= tp ? s.kv_heads / tp : 1; }

}  // namespace

TpLayer::TpLayer(Group& g, const LayerSpec& s) : g_(g), s_(s) {
  const Comm& c = g.comm(TPPP_SCOPE_TP);
  tp_ = c.size();
  r_ = c.me;
  const char* kn = kind_name(s.kind);
  need(dtype_is_float(s.dtype), "%s layer: dtype %s is not F32, F16 or BF16", kn, dtype_name(s.dtype));
  need(s.in > 0, "%s layer: in_features %lld must be positive", kn, static_cast<long long>(s.in));
  switch (s.kind) {
    case LayerKind::Column:
    case LayerKind::GateUp:
    case LayerKind::Mlp:
      need(s.out > 0 && s.out % tp_ == 0, "%s layer: out_features %lld is not divisible by tp %d", kn,
           static_cast<long long>(s.out), tp_);
      break;
    case LayerKind::Row:
      need(s.out > 0, "%s layer: out_features must be positive", kn);
      need(s.in % tp_ == 0, "%s layer: in_features %lld is not divisible by tp %d", kn, static_cast<long long>(s.in),
           tp_);
      break;
    case LayerKind::Replicated: need(s.out > 0, "%s layer: out_features must be positive", kn); break;
    case LayerKind::Qkv:
      need(s.heads > 0 && s.kv_heads > 0 && s.head_dim > 0, "QKV layer: heads, kv_heads and head_dim must be set");
      need(s.heads % tp_ == 0, "QKV layer: %lld heads are not divisible by tp %d", static_cast<long long>(s.heads),
           tp_);
      need(s.heads % s.kv_heads == 0, "QKV layer: %lld heads are not a multiple of %lld kv heads",
           static_cast<long long>(s.heads), static_cast<long long>(s.kv_heads));
      need(s.kv_heads >= tp_ ? s.kv_heads % tp_ == 0 : tp_ % s.kv_heads == 0,
           "QKV layer: %lld kv heads do not divide over (or replicate across) tp %d",
           static_cast<long long>(s.kv_heads), tp_);
      break;
    case LayerKind::Embedding:
    case LayerKind::LmHead: need(s.vocab > 0, "%s layer: vocab_size must be positive", kn); break;
  }
  be_ = g.backend();
  parts_.emplace_back(new Part());
  if (s.kind == LayerKind::Mlp) {
    LayerSpec d;
    d.kind = LayerKind::Row;
    d.dtype = s.dtype;
    d.in = s.out;
    d.out = s.in;
    d.input_is_parallel = true;
    down_.reset(new TpLayer(g, d));
  }
}

TpLayer::~TpLayer() {
  for (Scratch& sc : scratch_) be_->free(sc.p);
  for (auto& p : parts_) {
    if (p->table) be_->free(p->table);
    if (p->bias) be_->free(p->bias);
  }
}

int TpLayer::parts() const { return s_.kind == LayerKind::Mlp ? 2 : 1; }

std::vector<int64_t> TpLayer::weight_shape(int p) const {
  const int64_t tp = tp_;
  if (s_.kind == LayerKind::Mlp && p == 1) return down_->weight_shape(0);
  switch (s_.kind) {
    case LayerKind::Column: return {s_.out / tp, s_.in};
    case LayerKind::Row: return {s_.out, s_.in / tp};
    case LayerKind::Replicated: return {s_.out, s_.in};
    case LayerKind::GateUp:
    case LayerKind::Mlp: return {2 * s_.out / tp, s_.in};
    case LayerKind::Qkv: return {(s_.heads / tp + 2 * kv_local(s_, tp_)) * s_.head_dim, s_.in};
    case LayerKind::Embedding:
    case LayerKind::LmHead: return {(s_.vocab + tp - 1) / tp, s_.in};
  }
  return {};
}

int64_t TpLayer::bias_len(int p) const {
  if (!s_.bias || p != 0) return 0;
  switch (s_.kind) {
    case LayerKind::Column:
    case LayerKind::Qkv: return weight_shape(0)[0];
    case LayerKind::Row:
    case LayerKind::Replicated: return s_.out;
    default: return 0;
  }
}

void TpLayer::bind(int p, const tppp_tensor& w, const tppp_tensor* b) {
  const char* kn = kind_name(s_.kind);
  need(p >= 0 && p < parts(), "%s layer: weight part %d does not exist (it has %d)", kn, p, parts());
  if (s_.kind == LayerKind::Mlp && p == 1) return down_->bind(0, w, b);
  need(w.data != nullptr, "%s layer: weight data is NULL", kn);
  need(w.mem_kind == TPPP_MEM_HOST || w.mem_kind == TPPP_MEM_PINNED, "%s layer: bind takes host memory", kn);
  need(w.strides == nullptr, "%s layer: weight must be contiguous", kn);
  need(dtype_is_float(w.dtype), "%s layer: weight dtype %s is not F32, F16 or BF16", kn, dtype_name(w.dtype));
  std::vector<int64_t> want = weight_shape(p);
  need(shape_of(w) == want, "%s layer: weight shape %s, but this rank's shard is %s", kn,
       shape_string(shape_of(w)).c_str(), shape_string(want).c_str());
  const int64_t bl = bias_len(p);
  need((b != nullptr) == (bl > 0), "%s layer: %s", kn, bl > 0 ? "the layer has a bias: pass it" : "the layer has no bias");
  Part& part = *parts_[static_cast<size_t>(p)];
  const size_t es = dtype_size(s_.dtype);
  std::vector<char> tmp;
  auto converted = [&](const tppp_tensor& t, size_t n) -> const void* {
    if (t.dtype == s_.dtype) return t.data;
    tmp.resize(n * es);
    convert_dtype(t.data, t.dtype, tmp.data(), s_.dtype, n);
    return tmp.data();
  };
  if (s_.kind == LayerKind::Embedding) {
    const size_t n = static_cast<size_t>(want[0] * want[1]);
    const void* src = converted(w, n);
    void* table = be_->alloc(n * es);
    be_->copy(table, src, n * es, nullptr);
    if (part.table) be_->free(part.table);
    part.table = table;
  } else {
    part.w = be_->pack(w.data, w.dtype, want[0], want[1], s_.dtype);
  }
  part.n = want[0];
  part.k = want[1];
  if (b) {
    need(b->data && b->ndim == 1 && b->shape[0] == bl && dtype_is_float(b->dtype),
         "%s layer: bias must be a float vector of %lld elements", kn, static_cast<long long>(bl));
    const void* src = converted(*b, static_cast<size_t>(bl));
    void* nb = be_->alloc(static_cast<size_t>(bl) * es);
    be_->copy(nb, src, static_cast<size_t>(bl) * es, nullptr);
    if (part.bias) be_->free(part.bias);
    part.bias = nb;
  }
  be_->sync(nullptr);  // the host copies above may be freed when bind returns
}

void TpLayer::bind_checkpoint(const Checkpoint& c, const std::string& prefix) {
  GridSpec gs;
  gs.tp = tp_;
  gs.tp_rank = r_;
  gs.pp = g_.config().pp;
  gs.pp_rank = g_.pos().pp_rank;
  // Loads this rank's slices of names, stacked along dim 0, in the layer dtype.
  auto load_stacked = [&](const std::vector<std::string>& names, std::vector<char>* buf, int64_t* rows) {
    *rows = 0;
    std::vector<std::pair<ShardDecision, SlicePlan>> plans;
    for (const std::string& n : names) {
      ShardDecision d = c.decide(n, gs);
      if (d.rule == ShardRule::OtherStage)
        fail(TPPP_ERR_INVALID_USAGE, "'%s' belongs to another pipeline stage than this rank's (%lld)", n.c_str(),
             static_cast<long long>(gs.pp_rank));
      if (s_.kind == LayerKind::Replicated) d.spec = SliceSpec();  // the whole tensor on every rank
      const StTensor& t = *c.get(d.source).t;
      plans.emplace_back(d, plan_slice(t.shape, t.esize, d.spec, n));
      *rows += plans.back().second.out_shape[0];
    }
    size_t total = 0;
    for (auto& pl : plans) total += pl.second.out_bytes / c.get(pl.first.source).t->esize * dtype_size(s_.dtype);
    buf->assign(total, 0);
    size_t at = 0;
    for (auto& pl : plans) {
      size_t nb = pl.second.out_bytes / c.get(pl.first.source).t->esize * dtype_size(s_.dtype);
      c.load(pl.first.source, pl.first.spec, buf->data() + at, nb, s_.dtype);
      at += nb;
    }
    return plans.empty() ? std::vector<int64_t>() : plans[0].second.out_shape;
  };
  auto bind_names = [&](int p, const std::vector<std::string>& wn, const std::vector<std::string>& bn) {
    std::vector<char> wb, bb;
    int64_t rows = 0, brows = 0;
    std::vector<int64_t> sh = load_stacked(wn, &wb, &rows);
    tppp_tensor w{};
    w.data = wb.data();
    w.mem_kind = TPPP_MEM_HOST;
    w.device = -1;
    w.dtype = s_.dtype;
    w.ndim = static_cast<int32_t>(sh.size());
    for (size_t i = 0; i < sh.size(); i++) w.shape[i] = sh[i];
    w.shape[0] = rows;
    tppp_tensor b{};
    bool with_bias = bias_len(p) > 0 && !bn.empty();
    if (with_bias) {
      load_stacked(bn, &bb, &brows);
      b = w;
      b.data = bb.data();
      b.ndim = 1;
      b.shape[0] = brows;
    }
    bind(p, w, with_bias ? &b : nullptr);
  };
  const std::string& P = prefix;
  switch (s_.kind) {
    case LayerKind::GateUp: bind_names(0, {P + ".gate_proj.weight", P + ".up_proj.weight"}, {}); break;
    case LayerKind::Mlp:
      bind_names(0, {P + ".gate_proj.weight", P + ".up_proj.weight"}, {});
      down_->bind_checkpoint(c, P + ".down_proj");
      break;
    case LayerKind::Qkv:
      bind_names(0, {P + ".q_proj.weight", P + ".k_proj.weight", P + ".v_proj.weight"},
                 {P + ".q_proj.bias", P + ".k_proj.bias", P + ".v_proj.bias"});
      break;
    default: bind_names(0, {P + ".weight"}, {P + ".bias"}); break;
  }
}

void TpLayer::check_bound(const char* op) const {
  const Part& p = *parts_[0];
  if (!p.w && !p.table) fail(TPPP_ERR_INVALID_USAGE, "%s layer: %s before its weights were bound", kind_name(s_.kind), op);
  if (down_) down_->check_bound(op);
}

char* TpLayer::scratch(int i, size_t bytes, void* stream) {
  if (scratch_.size() <= static_cast<size_t>(i)) scratch_.resize(static_cast<size_t>(i) + 1);
  Scratch& sc = scratch_[static_cast<size_t>(i)];
  if (sc.bytes < bytes) {
    if (be_->capturing(stream))
      fail(TPPP_ERR_INVALID_USAGE,
           "%s layer: forward with M larger than any before it while a CUDA graph is being captured (it must "
           "allocate); run one forward with the largest M before capturing",
           kind_name(s_.kind));
    void* p = be_->alloc(bytes);
    be_->free(sc.p);
    sc.p = p;
    sc.bytes = bytes;
  }
  return static_cast<char*>(sc.p);
}

void TpLayer::local_logits(const void* x, int64_t m, void* stream) {
  const Part& p = *parts_[0];
  be_->linear(x, *p.w, nullptr, scratch(0, static_cast<size_t>(m * p.n) * dtype_size(s_.dtype), stream), m, p.n,
              s_.dtype, s_.dtype, stream);
}

// Activations live where the backend computes (pinned host memory counts as host).
void TpLayer::check_memory(const tppp_tensor& t, const char* kind, const char* what) const {
  const int32_t want = be_->mem_kind();
  need(t.mem_kind == want || (t.mem_kind == TPPP_MEM_PINNED && want == TPPP_MEM_HOST),
       "%s layer: %s is in memory kind %d but the group's backend (%s) needs %d", kind, what, t.mem_kind, be_->name(),
       want);
}

void TpLayer::forward(const tppp_tensor& x, const tppp_tensor* y, void* stream) {
  const char* kn = kind_name(s_.kind);
  g_.check_live("tppp_layer_forward");
  check_bound("forward");
  need(x.data != nullptr || x.shape[0] == 0, "%s layer: x data is NULL", kn);
  check_memory(x, kn, "x");
  need(x.strides == nullptr, "%s layer: x must be contiguous", kn);
  const bool ids = s_.kind == LayerKind::Embedding;
  if (ids) {
    need(x.ndim == 1 && (x.dtype == TPPP_DTYPE_I32 || x.dtype == TPPP_DTYPE_I64),
         "EMBEDDING layer: x must be token ids [M] of I32 or I64");
  } else {
    need(x.dtype == s_.dtype, "%s layer: x dtype %s, layer dtype %s", kn, dtype_name(x.dtype), dtype_name(s_.dtype));
    need(x.ndim == 2, "%s layer: x must be 2-D [M, features], got %d dims", kn, x.ndim);
  }
  const int64_t m = x.shape[0];
  int64_t x_cols = s_.in;
  if (s_.kind == LayerKind::Row && s_.input_is_parallel) x_cols = s_.in / tp_;
  if (!ids) need(x.shape[1] == x_cols, "%s layer: x is [%lld, %lld] but the layer takes [M, %lld]", kn,
                 static_cast<long long>(m), static_cast<long long>(x.shape[1]), static_cast<long long>(x_cols));
  int64_t y_cols = 0;
  switch (s_.kind) {
    case LayerKind::Column: y_cols = s_.gather_output ? s_.out : s_.out / tp_; break;
    case LayerKind::Row:
    case LayerKind::Replicated: y_cols = s_.out; break;
    case LayerKind::GateUp: y_cols = s_.out / tp_; break;
    case LayerKind::Qkv: y_cols = weight_shape(0)[0]; break;
    case LayerKind::Embedding:
    case LayerKind::Mlp: y_cols = s_.in; break;
    case LayerKind::LmHead: y_cols = s_.vocab; break;
  }
  const bool y_optional = s_.kind == LayerKind::LmHead && s_.gather_to_rank0 && r_ != 0;
  if (!y_optional || y) {
    need(y != nullptr && (y->data != nullptr || m == 0), "%s layer: y is NULL", kn);
    need(y->dtype == s_.dtype, "%s layer: y dtype %s, layer dtype %s", kn, dtype_name(y->dtype), dtype_name(s_.dtype));
    need(y->ndim == 2 && y->shape[0] == m && y->shape[1] == y_cols, "%s layer: y is %s but must be [%lld, %lld]", kn,
         shape_string(shape_of(*y)).c_str(), static_cast<long long>(m), static_cast<long long>(y_cols));
    need(y->strides == nullptr, "%s layer: y must be contiguous", kn);
    check_memory(*y, kn, "y");
  }
  if (ids && be_->mem_kind() == TPPP_MEM_HOST)  // device ids are not read back: out-of-vocab rows come out 0
    for (int64_t i = 0; i < m; i++) {
      int64_t id = x.dtype == TPPP_DTYPE_I64 ? static_cast<const int64_t*>(x.data)[i]
                                             : static_cast<const int32_t*>(x.data)[i];
      need(id >= 0 && id < s_.vocab, "EMBEDDING layer: token id %lld at position %lld is outside [0, %lld)",
           static_cast<long long>(id), static_cast<long long>(i), static_cast<long long>(s_.vocab));
    }
  if (m == 0) return;
  const void* xin = x.data;
  void* yout = y ? y->data : nullptr;
  const size_t es = dtype_size(s_.dtype);
  Transport& tr = g_.transport();
  const Comm& tc = g_.comm(TPPP_SCOPE_TP);
  const Part& p = *parts_[0];
  switch (s_.kind) {
    case LayerKind::Replicated:
    case LayerKind::Qkv: be_->linear(xin, *p.w, p.bias, yout, m, p.n, s_.dtype, s_.dtype, stream); break;
    case LayerKind::Column:
      if (!s_.gather_output || tp_ == 1) {
        be_->linear(xin, *p.w, p.bias, yout, m, p.n, s_.dtype, s_.dtype, stream);
      } else {  // compute this rank's columns, gather [tp][M][n], interleave into y[M][tp*n]
        char* mine = scratch(0, static_cast<size_t>(m * p.n) * es, stream);
        char* all = scratch(1, static_cast<size_t>(m * p.n * tp_) * es, stream);
        be_->linear(xin, *p.w, p.bias, mine, m, p.n, s_.dtype, s_.dtype, stream);
        tr.all_gather(tc, mine, all, static_cast<size_t>(m * p.n), s_.dtype, stream);
        const size_t row = static_cast<size_t>(p.n) * es;
        for (int t = 0; t < tp_; t++)
          be_->copy2d(static_cast<char*>(yout) + t * row, static_cast<size_t>(s_.out) * es,
                      all + static_cast<size_t>(t * m) * row, row, row, static_cast<size_t>(m), stream);
      }
      break;
    case LayerKind::Row: {
      const void* xr = xin;
      if (!s_.input_is_parallel && tp_ > 1) {  // take this rank's columns of x
        const int64_t kr = s_.in / tp_;
        char* s0 = scratch(0, static_cast<size_t>(m * kr) * es, stream);
        be_->copy2d(s0, static_cast<size_t>(kr) * es, static_cast<const char*>(xin) + static_cast<size_t>(r_ * kr) * es,
                    static_cast<size_t>(s_.in) * es, static_cast<size_t>(kr) * es, static_cast<size_t>(m), stream);
        xr = s0;
      }
      reduce_rows(xr, m, yout, stream);
      break;
    }
    case LayerKind::GateUp:
    case LayerKind::Mlp: {
      char* gu = scratch(0, static_cast<size_t>(m * p.n) * es, stream);
      be_->linear(xin, *p.w, nullptr, gu, m, p.n, s_.dtype, s_.dtype, stream);
      if (s_.kind == LayerKind::GateUp) {
        be_->silu_mul(gu, yout, m, p.n / 2, s_.dtype, stream);
      } else {
        char* act = scratch(1, static_cast<size_t>(m * p.n / 2) * es, stream);
        be_->silu_mul(gu, act, m, p.n / 2, s_.dtype, stream);
        down_->reduce_rows(act, m, yout, stream);
      }
      break;
    }
    case LayerKind::Embedding:
      be_->embedding(xin, x.dtype, m, p.table, r_ * p.n, p.n, p.k, yout, s_.dtype, stream);
      if (tp_ > 1) tr.all_reduce(tc, yout, yout, static_cast<size_t>(m * p.k), s_.dtype, TPPP_OP_SUM, stream);
      break;
    case LayerKind::LmHead: {
      local_logits(xin, m, stream);
      char* mine = scratch(0, 0, stream);
      const int64_t per = p.n;
      auto place = [&](int t, const char* block) {  // block [M, per] of rank t into y[M, V]
        const int64_t c0 = t * per, cols = std::max<int64_t>(0, std::min(per, s_.vocab - c0));
        if (cols > 0)
          be_->copy2d(static_cast<char*>(yout) + static_cast<size_t>(c0) * es, static_cast<size_t>(s_.vocab) * es,
                      block, static_cast<size_t>(per) * es, static_cast<size_t>(cols) * es, static_cast<size_t>(m),
                      stream);
      };
      const size_t blk = static_cast<size_t>(m * per);
      if (!s_.gather_to_rank0) {
        char* all = scratch(1, blk * static_cast<size_t>(tp_) * es, stream);
        tr.all_gather(tc, mine, all, blk, s_.dtype, stream);
        for (int t = 0; t < tp_; t++) place(t, all + static_cast<size_t>(t) * blk * es);
      } else if (r_ != 0) {
        tr.isend(tc, 0, 0x7ffffff0, mine, blk * es, stream)->wait();
      } else {
        place(0, mine);
        char* in = scratch(1, blk * es * static_cast<size_t>(tp_ - 1), stream);  // one block per sender
        for (int t = 1; t < tp_; t++) {
          char* at = in + static_cast<size_t>(t - 1) * blk * es;
          tr.irecv(tc, t, 0x7ffffff0, at, blk * es, stream)->wait();
          place(t, at);
        }
      }
      break;
    }
  }
}

// ROW: y[M, out] = sum over TP ranks of x_r W_r^T, + bias once. With f16/bf16
// the partial sums stay f32 through the all-reduce and are rounded once at
// the end (f32 accumulate), so TP adds no rounding steps.
void TpLayer::reduce_rows(const void* x, int64_t m, void* y, void* stream) {
  const Part& p = *parts_[0];
  if (tp_ == 1) {
    be_->linear(x, *p.w, p.bias, y, m, p.n, s_.dtype, s_.dtype, stream);
    return;
  }
  const size_t n = static_cast<size_t>(m * p.n);
  const bool wide = s_.dtype != TPPP_DTYPE_F32;
  void* acc = wide ? static_cast<void*>(scratch(2, n * 4, stream)) : y;
  be_->linear(x, *p.w, nullptr, acc, m, p.n, s_.dtype, TPPP_DTYPE_F32, stream);
  g_.transport().all_reduce(g_.comm(TPPP_SCOPE_TP), acc, acc, n, TPPP_DTYPE_F32, TPPP_OP_SUM, stream);
  if (p.bias) be_->add_bias(acc, p.bias, m, p.n, s_.dtype, TPPP_DTYPE_F32, stream);  // once, after the reduce
  if (wide) be_->convert(acc, TPPP_DTYPE_F32, y, s_.dtype, n, stream);
}

void TpLayer::argmax(const tppp_tensor& x, const tppp_tensor& ids, void* stream) {
  need(s_.kind == LayerKind::LmHead, "argmax needs an LM_HEAD layer, this is %s", kind_name(s_.kind));
  g_.check_live("tppp_layer_argmax");
  check_bound("argmax");
  need(x.data && x.dtype == s_.dtype && x.ndim == 2 && x.shape[1] == s_.in && x.strides == nullptr,
       "LM_HEAD argmax: x must be contiguous [M, %lld] of %s", static_cast<long long>(s_.in), dtype_name(s_.dtype));
  const int64_t m = x.shape[0];
  need(ids.data && ids.dtype == TPPP_DTYPE_I64 && ids.ndim == 1 && ids.shape[0] == m,
       "LM_HEAD argmax: ids must be I64 [%lld]", static_cast<long long>(m));
  check_memory(x, "LM_HEAD", "x");
  check_memory(ids, "LM_HEAD", "ids");
  if (m == 0) return;
  local_logits(x.data, m, stream);
  const Part& p = *parts_[0];
  const int64_t c0 = r_ * p.n, valid = std::max<int64_t>(0, std::min(p.n, s_.vocab - c0));
  // Only (max, index) per row crosses the wire: cand[M] here, all[tp][M] after the gather.
  const size_t cb = static_cast<size_t>(m) * sizeof(ArgmaxCand);
  ArgmaxCand* mine = reinterpret_cast<ArgmaxCand*>(scratch(1, cb, stream));
  ArgmaxCand* all = reinterpret_cast<ArgmaxCand*>(scratch(3, cb * static_cast<size_t>(tp_), stream));
  be_->argmax_rows(scratch(0, 0, stream), m, p.n, valid, c0, s_.dtype, mine, stream);
  g_.transport().all_gather(g_.comm(TPPP_SCOPE_TP), mine, all, cb, TPPP_DTYPE_U8, stream);
  be_->argmax_merge(all, tp_, m, static_cast<int64_t*>(ids.data), stream);
}

}  // namespace tppp
