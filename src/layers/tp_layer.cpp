// What every TP layer kind shares: weight binding, the argument checks of
// forward, scratch, and the row-parallel reduce. No kind is known here.
#include "layers/tp_layer.hpp"

#include "core/dtype.hpp"
#include "core/error.hpp"
#include "group/group.hpp"

namespace tppp {

void TpLayer::need(bool ok, const char* fmt, ...) {
  if (ok) return;
  va_list ap;
  va_start(ap, fmt);
  std::string m = vstrf(fmt, ap);
  va_end(ap);
  throw Error(TPPP_ERR_INVALID_ARGUMENT, m);
}

std::vector<int64_t> TpLayer::shape_of(const tppp_tensor& t) { return std::vector<int64_t>(t.shape, t.shape + t.ndim); }

TpLayer::TpLayer(Group& g, const LayerSpec& s) : g_(g), s_(s), parts_(1) {
  const Comm& c = g.comm(TPPP_SCOPE_TP);
  tp_ = c.size();
  r_ = c.me;
  need(dtype_is_float(s.dtype), "%s layer: dtype %s is not F32, F16 or BF16", name(), dtype_name(s.dtype));
  need(s.in > 0, "%s layer: in_features %lld must be positive", name(), static_cast<long long>(s.in));
  be_ = g.backend();
}

TpLayer::~TpLayer() {
  for (Scratch& sc : scratch_) be_->free(sc.p);
  for (Part& p : parts_) p.w.reset();  // views first, then the copies they view
  for (void* d : owned_weights_) be_->free(d);
  for (Part& p : parts_) {
    if (p.table && p.owned) be_->free(p.table);
    if (p.bias && p.owned) be_->free(p.bias);
  }
}

Transport& TpLayer::transport() const { return g_.transport(); }
const Comm& TpLayer::tp_comm() const { return g_.comm(TPPP_SCOPE_TP); }
size_t TpLayer::es() const { return dtype_size(s_.dtype); }

int64_t TpLayer::bias_len(int) const { return 0; }

const void* TpLayer::in_layer_dtype(const tppp_tensor& t, size_t n, std::vector<char>* tmp) const {
  if (t.dtype == s_.dtype) return t.data;
  tmp->resize(n * es());
  convert_dtype(t.data, t.dtype, tmp->data(), s_.dtype, n);
  return tmp->data();
}

void TpLayer::bind(int p, const tppp_tensor& w, const tppp_tensor* b, bool view) {
  need(p >= 0 && p < parts(), "%s layer: weight part %d does not exist (it has %d)", name(), p, parts());
  need(w.data != nullptr, "%s layer: weight data is NULL", name());
  const bool host = w.mem_kind == TPPP_MEM_HOST || w.mem_kind == TPPP_MEM_PINNED;
  const bool mine = w.mem_kind == be_->mem_kind();  // the backend's own memory (host for the CPU backend)
  need(host || mine, "%s layer: weight memory kind %d: bind takes host memory or the %s backend's", name(),
       w.mem_kind, be_->name());
  need(!view || (mine && w.dtype == s_.dtype), "%s layer: a weight bound in place must be %s backend memory of %s",
       name(), be_->name(), dtype_name(s_.dtype));
  need(w.strides == nullptr, "%s layer: weight must be contiguous", name());
  need(dtype_is_float(w.dtype), "%s layer: weight dtype %s is not F32, F16 or BF16", name(), dtype_name(w.dtype));
  need(host || w.dtype == s_.dtype, "%s layer: a weight in %s memory must be %s (it is %s)", name(), be_->name(),
       dtype_name(s_.dtype), dtype_name(w.dtype));
  const std::vector<int64_t> want = weight_shape(p);
  need(shape_of(w) == want, "%s layer: weight shape %s, but this rank's shard is %s", name(),
       shape_string(shape_of(w)).c_str(), shape_string(want).c_str());
  const int64_t bl = bias_len(p);
  need((b != nullptr) == (bl > 0), "%s layer: %s", name(),
       bl > 0 ? "the layer has a bias: pass it" : "the layer has no bias");
  if (b)
    need(b->data && b->ndim == 1 && b->shape[0] == bl && dtype_is_float(b->dtype) &&
             (b->mem_kind == w.mem_kind || (host && b->mem_kind != TPPP_MEM_CUDA)) && (!view || b->dtype == s_.dtype),
         "%s layer: bias must be a float vector of %lld elements in the weight's memory", name(),
         static_cast<long long>(bl));
  Part& part = parts_[0];
  if (part.owned) {  // drop what an earlier bind made
    if (part.table) be_->free(part.table);
    if (part.bias) be_->free(part.bias);
  }
  part.table = part.bias = nullptr;
  part.owned = !view;
  std::vector<char> tmp;
  // Into backend memory in the layer dtype: a copy (host data converted first) or, with view, the pointer.
  auto place = [&](const tppp_tensor& t, size_t n) -> void* {
    if (view) return t.data;
    const void* src = host ? in_layer_dtype(t, n, &tmp) : t.data;
    void* d = be_->alloc(n * es());
    be_->copy(d, src, n * es(), nullptr);
    return d;
  };
  if (takes_ids()) {  // the embedding table stays rows in backend memory
    part.table = place(w, static_cast<size_t>(want[0] * want[1]));
  } else if (view) {
    part.w = be_->view_weight(w.data, want[0], want[1], s_.dtype);
  } else if (host) {
    part.w = be_->pack(w.data, w.dtype, want[0], want[1], s_.dtype);
  } else {  // backend memory of the layer dtype: the backend's own copy
    void* d = place(w, static_cast<size_t>(want[0] * want[1]));
    be_->sync(nullptr);
    part.w = be_->view_weight(d, want[0], want[1], s_.dtype);
    owned_weights_.push_back(d);
  }
  part.n = want[0];
  part.k = want[1];
  if (b) part.bias = place(*b, static_cast<size_t>(bl));
  be_->sync(nullptr);  // the host copies above may be freed when bind returns
}

void TpLayer::check_bound(const char* op) const {
  const Part& p = parts_[0];
  if (!p.w && !p.table) fail(TPPP_ERR_INVALID_USAGE, "%s layer: %s before its weights were bound", name(), op);
}

char* TpLayer::scratch(int i, size_t bytes, void* stream) {
  if (scratch_.size() <= static_cast<size_t>(i)) scratch_.resize(static_cast<size_t>(i) + 1);
  Scratch& sc = scratch_[static_cast<size_t>(i)];
  if (sc.bytes < bytes) {
    if (be_->capturing(stream))
      fail(TPPP_ERR_INVALID_USAGE,
           "%s layer: forward with M larger than any before it while a CUDA graph is being captured (it must "
           "allocate); run one forward with the largest M before capturing",
           name());
    void* p = be_->alloc(bytes);
    be_->free(sc.p);
    sc.p = p;
    sc.bytes = bytes;
    scratch_epoch_++;
  }
  return static_cast<char*>(sc.p);
}

// Activations live where the backend computes (pinned host memory counts as host).
void TpLayer::check_memory(const tppp_tensor& t, const char* what) const {
  const int32_t want = be_->mem_kind();
  need(t.mem_kind == want || (t.mem_kind == TPPP_MEM_PINNED && want == TPPP_MEM_HOST),
       "%s layer: %s is in memory kind %d but the group's backend (%s) needs %d", name(), what, t.mem_kind,
       be_->name(), want);
}

void TpLayer::skip_collectives(tppp_status status, int n) const noexcept {
  for (int i = 0; i < n; i++) transport().collective_failed(tp_comm(), status);
}

void TpLayer::forward(const tppp_tensor& x, const tppp_tensor* y, void* stream) {
  calls_++;
  try {
    check_forward(x, y);
  } catch (const Error& e) {
    skip_collectives(e.status(), tp_collectives());
    throw;
  }
  const int64_t m = x.shape[0];
  if (m == 0) {
    skip_collectives(TPPP_OK, tp_collectives());
    return;
  }
  run(x, m, y ? y->data : nullptr, stream);
}

void TpLayer::check_forward(const tppp_tensor& x, const tppp_tensor* y) const {
  const char* kn = name();
  check_tensor(x, "tppp_layer_forward", "x");
  if (y) check_tensor(*y, "tppp_layer_forward", "y");
  g_.check_live("tppp_layer_forward");
  check_bound("forward");
  need(x.data != nullptr || x.shape[0] == 0, "%s layer: x data is NULL", kn);
  check_memory(x, "x");
  need(x.strides == nullptr, "%s layer: x must be contiguous", kn);
  const int64_t m = x.shape[0];
  if (takes_ids()) {
    need(x.ndim == 1 && (x.dtype == TPPP_DTYPE_I32 || x.dtype == TPPP_DTYPE_I64),
         "%s layer: x must be token ids [M] of I32 or I64", kn);
  } else {
    need(x.dtype == s_.dtype, "%s layer: x dtype %s, layer dtype %s", kn, dtype_name(x.dtype), dtype_name(s_.dtype));
    need(x.ndim == 2, "%s layer: x must be 2-D [M, features], got %d dims", kn, x.ndim);
    need(x.shape[1] == x_cols(), "%s layer: x is [%lld, %lld] but the layer takes [M, %lld]", kn,
         static_cast<long long>(m), static_cast<long long>(x.shape[1]), static_cast<long long>(x_cols()));
  }
  if (!y_optional() || y) {
    need(y != nullptr && (y->data != nullptr || m == 0), "%s layer: y is NULL", kn);
    need(y->dtype == s_.dtype, "%s layer: y dtype %s, layer dtype %s", kn, dtype_name(y->dtype), dtype_name(s_.dtype));
    need(y->ndim == 2 && y->shape[0] == m && y->shape[1] == y_cols(), "%s layer: y is %s but must be [%lld, %lld]",
         kn, shape_string(shape_of(*y)).c_str(), static_cast<long long>(m), static_cast<long long>(y_cols()));
    need(y->strides == nullptr, "%s layer: y must be contiguous", kn);
    check_memory(*y, "y");
  }
}

void TpLayer::argmax(const tppp_tensor&, const tppp_tensor&, void*) {
  need(false, "argmax needs an LM_HEAD layer, this is %s", name());
}

const void* TpLayer::local_logits(const void*, int64_t, int64_t*, int64_t*, int64_t*, void*) {
  need(false, "local logits need an LM_HEAD layer, this is %s", name());
  return nullptr;
}

// With f16/bf16 the partial sums stay f32 through the all-reduce and are
// rounded once at the end (f32 accumulate), so TP adds no rounding steps.
void TpLayer::reduce_rows(const void* x, int64_t m, void* y, void* stream) {
  const Part& p = parts_[0];
  if (tp_ == 1) {
    be_->linear(x, *p.w, p.bias, y, m, p.n, s_.dtype, s_.dtype, stream);
    return;
  }
  const size_t n = static_cast<size_t>(m * p.n);
  const bool wide = s_.dtype != TPPP_DTYPE_F32;
  void* acc = wide ? static_cast<void*>(scratch(2, n * 4, stream)) : y;
  be_->linear(x, *p.w, nullptr, acc, m, p.n, s_.dtype, TPPP_DTYPE_F32, stream);
  transport().all_reduce(tp_comm(), acc, acc, n, TPPP_DTYPE_F32, TPPP_OP_SUM, place(stream));
  if (p.bias) be_->add_bias(acc, p.bias, m, p.n, s_.dtype, TPPP_DTYPE_F32, stream);  // once, after the reduce
  if (wide) be_->convert(acc, TPPP_DTYPE_F32, y, s_.dtype, n, stream);
}

}  // namespace tppp
