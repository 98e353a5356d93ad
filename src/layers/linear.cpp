// The plain linear kinds: COLUMN (output features split over TP, optionally
// gathered), ROW (input features split, partial sums all-reduced),
// REPLICATED (every rank the whole matrix) and QKV (COLUMN by heads, with
// kv heads replicated when there are fewer than TP ranks).
#include "core/dtype.hpp"
#include "layers/kinds.hpp"

namespace tppp {
namespace {

class Column final : public TpLayer {
 public:
  Column(Group& g, const LayerSpec& s) : TpLayer(g, s) {
    need(s.out > 0 && s.out % tp_ == 0, "%s layer: out_features %lld is not divisible by tp %d", name(),
         static_cast<long long>(s.out), tp_);
  }
  std::vector<int64_t> weight_shape(int) const override { return {s_.out / tp_, s_.in}; }
  int64_t bias_len(int p) const override { return s_.bias && p == 0 ? s_.out / tp_ : 0; }

 protected:
  int64_t y_cols() const override { return s_.gather_output ? s_.out : s_.out / tp_; }
  int tp_collectives() const override { return s_.gather_output && tp_ > 1 ? 1 : 0; }
  void run(const tppp_tensor& x, int64_t m, void* y, void* stream) override {
    const Part& p = part0();
    if (!s_.gather_output || tp_ == 1) {
      be_->linear(x.data, *p.w, p.bias, y, m, p.n, s_.dtype, s_.dtype, stream);
      return;
    }
    // This rank's columns, gathered [tp][M][n], interleaved into y[M][tp*n].
    char* mine = scratch(0, static_cast<size_t>(m * p.n) * es(), stream);
    char* all = scratch(1, static_cast<size_t>(m * p.n * tp_) * es(), stream);
    be_->linear(x.data, *p.w, p.bias, mine, m, p.n, s_.dtype, s_.dtype, stream);
    transport().all_gather(tp_comm(), mine, all, static_cast<size_t>(m * p.n), s_.dtype, place(stream));
    const size_t row = static_cast<size_t>(p.n) * es();
    for (int t = 0; t < tp_; t++)
      be_->copy2d(static_cast<char*>(y) + t * row, static_cast<size_t>(s_.out) * es(),
                  all + static_cast<size_t>(t * m) * row, row, row, static_cast<size_t>(m), stream);
  }
};

class Row final : public TpLayer {
 public:
  Row(Group& g, const LayerSpec& s) : TpLayer(g, s) {
    need(s.out > 0, "%s layer: out_features must be positive", name());
    need(s.in % tp_ == 0, "%s layer: in_features %lld is not divisible by tp %d", name(),
         static_cast<long long>(s.in), tp_);
  }
  std::vector<int64_t> weight_shape(int) const override { return {s_.out, s_.in / tp_}; }
  int64_t bias_len(int p) const override { return s_.bias && p == 0 ? s_.out : 0; }

 protected:
  int64_t x_cols() const override { return s_.input_is_parallel ? s_.in / tp_ : s_.in; }
  int64_t y_cols() const override { return s_.out; }
  int tp_collectives() const override { return tp_ > 1 ? 1 : 0; }
  void run(const tppp_tensor& x, int64_t m, void* y, void* stream) override {
    const void* xr = x.data;
    if (!s_.input_is_parallel && tp_ > 1) {  // take this rank's columns of x
      const int64_t kr = s_.in / tp_;
      char* s0 = scratch(0, static_cast<size_t>(m * kr) * es(), stream);
      be_->copy2d(s0, static_cast<size_t>(kr) * es(), static_cast<const char*>(x.data) + static_cast<size_t>(r_ * kr) * es(),
                  static_cast<size_t>(s_.in) * es(), static_cast<size_t>(kr) * es(), static_cast<size_t>(m), stream);
      xr = s0;
    }
    reduce_rows(xr, m, y, stream);
  }
};

class Replicated final : public TpLayer {
 public:
  Replicated(Group& g, const LayerSpec& s) : TpLayer(g, s) {
    need(s.out > 0, "%s layer: out_features must be positive", name());
  }
  std::vector<int64_t> weight_shape(int) const override { return {s_.out, s_.in}; }
  int64_t bias_len(int p) const override { return s_.bias && p == 0 ? s_.out : 0; }

 protected:
  int64_t y_cols() const override { return s_.out; }
  void run(const tppp_tensor& x, int64_t m, void* y, void* stream) override {
    const Part& p = part0();
    be_->linear(x.data, *p.w, p.bias, y, m, p.n, s_.dtype, s_.dtype, stream);
  }
};

class Qkv final : public TpLayer {
 public:
  Qkv(Group& g, const LayerSpec& s) : TpLayer(g, s) {
    need(s.heads > 0 && s.kv_heads > 0 && s.head_dim > 0, "QKV layer: heads, kv_heads and head_dim must be set");
    need(s.heads % tp_ == 0, "QKV layer: %lld heads are not divisible by tp %d", static_cast<long long>(s.heads),
         tp_);
    need(s.heads % s.kv_heads == 0, "QKV layer: %lld heads are not a multiple of %lld kv heads",
         static_cast<long long>(s.heads), static_cast<long long>(s.kv_heads));
    need(s.kv_heads >= tp_ ? s.kv_heads % tp_ == 0 : tp_ % s.kv_heads == 0,
         "QKV layer: %lld kv heads do not divide over (or replicate across) tp %d",
         static_cast<long long>(s.kv_heads), tp_);
  }
  // [q heads of this rank; its kv heads (or the one replicated head); the same for v]
  std::vector<int64_t> weight_shape(int) const override {
    const int64_t kv_local = s_.kv_heads >= tp_ ? s_.kv_heads / tp_ : 1;
    return {(s_.heads / tp_ + 2 * kv_local) * s_.head_dim, s_.in};
  }
  int64_t bias_len(int p) const override { return s_.bias && p == 0 ? weight_shape(0)[0] : 0; }

 protected:
  int64_t y_cols() const override { return weight_shape(0)[0]; }
  void run(const tppp_tensor& x, int64_t m, void* y, void* stream) override {
    const Part& p = part0();
    be_->linear(x.data, *p.w, p.bias, y, m, p.n, s_.dtype, s_.dtype, stream);
  }
};

}  // namespace

std::unique_ptr<TpLayer> make_column(Group& g, const LayerSpec& s) { return std::unique_ptr<TpLayer>(new Column(g, s)); }
std::unique_ptr<TpLayer> make_row(Group& g, const LayerSpec& s) { return std::unique_ptr<TpLayer>(new Row(g, s)); }
std::unique_ptr<TpLayer> make_replicated(Group& g, const LayerSpec& s) {
  return std::unique_ptr<TpLayer>(new Replicated(g, s));
}
std::unique_ptr<TpLayer> make_qkv(Group& g, const LayerSpec& s) { return std::unique_ptr<TpLayer>(new Qkv(g, s)); }

}  // namespace tppp
