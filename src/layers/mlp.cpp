// The MLP kinds: GATE_UP (merged [gate_r; up_r] column GEMM, then
// silu(gate) * up) and MLP (GATE_UP, then the down projection as a ROW
// layer whose partial sums are all-reduced).
#include "core/dtype.hpp"
#include "layers/kinds.hpp"

namespace tppp {
namespace {

class GateUp : public TpLayer {
 public:
  GateUp(Group& g, const LayerSpec& s) : TpLayer(g, s) {
    need(s.out > 0 && s.out % tp_ == 0, "%s layer: out_features %lld is not divisible by tp %d", name(),
         static_cast<long long>(s.out), tp_);
  }
  std::vector<int64_t> weight_shape(int) const override { return {2 * s_.out / tp_, s_.in}; }

 protected:
  int64_t y_cols() const override { return s_.out / tp_; }
  // act[M, I/tp] = silu(gate) * up of x's [gate | up] projection.
  void gate_up(const void* x, int64_t m, void* act, void* stream) {
    const Part& p = part0();
    char* gu = scratch(0, static_cast<size_t>(m * p.n) * es(), stream);
    be_->linear(x, *p.w, nullptr, gu, m, p.n, s_.dtype, s_.dtype, stream);
    be_->silu_mul(gu, act, m, p.n / 2, s_.dtype, stream);
  }
  void run(const tppp_tensor& x, int64_t m, void* y, void* stream) override { gate_up(x.data, m, y, stream); }
};

class Mlp final : public GateUp {
 public:
  Mlp(Group& g, const LayerSpec& s) : GateUp(g, s) {
    LayerSpec d;
    d.kind = LayerKind::Row;
    d.dtype = s.dtype;
    d.in = s.out;
    d.out = s.in;
    d.input_is_parallel = true;
    down_ = make_row(g, d);
  }
  int parts() const override { return 2; }
  std::vector<int64_t> weight_shape(int p) const override {
    return p == 1 ? down_->weight_shape(0) : GateUp::weight_shape(0);
  }
  void bind(int p, const tppp_tensor& w, const tppp_tensor* b, bool view) override {
    if (p == 1) return down_->bind(0, w, b, view);
    GateUp::bind(p, w, b, view);
  }
  void check_bound(const char* op) const override {
    GateUp::check_bound(op);
    down_->check_bound(op);
  }
  uint64_t scratch_epoch() const override { return GateUp::scratch_epoch() + (down_->scratch_epoch() << 32); }

 protected:
  int64_t y_cols() const override { return s_.in; }
  int tp_collectives() const override { return tp_ > 1 ? 1 : 0; }
  void run(const tppp_tensor& x, int64_t m, void* y, void* stream) override {
    char* act = scratch(1, static_cast<size_t>(m * part0().n / 2) * es(), stream);
    gate_up(x.data, m, act, stream);
    down_->reduce_rows(act, m, y, stream);
  }

 private:
  std::unique_ptr<TpLayer> down_;  // the ROW (down_proj) layer
};

}  // namespace

std::unique_ptr<TpLayer> make_gate_up(Group& g, const LayerSpec& s) { return std::unique_ptr<TpLayer>(new GateUp(g, s)); }
std::unique_ptr<TpLayer> make_mlp(Group& g, const LayerSpec& s) { return std::unique_ptr<TpLayer>(new Mlp(g, s)); }

}  // namespace tppp
