// The vocab-parallel kinds: EMBEDDING (each rank holds ceil(V/tp) rows;
// ids outside its rows give 0, then an all-reduce) and LM_HEAD (each rank's
// logits columns, gathered to every rank or to TP rank 0, and the
// distributed greedy argmax that exchanges only (max, index) per row).
#include <algorithm>

#include "core/dtype.hpp"
#include "core/error.hpp"
#include "group/group.hpp"
#include "layers/kinds.hpp"
#include "transport/tags.hpp"

namespace tppp {
namespace {

class Embedding final : public TpLayer {
 public:
  Embedding(Group& g, const LayerSpec& s) : TpLayer(g, s) {
    need(s.vocab > 0, "%s layer: vocab_size must be positive", name());
  }
  std::vector<int64_t> weight_shape(int) const override { return {(s_.vocab + tp_ - 1) / tp_, s_.in}; }

 protected:
  bool takes_ids() const override { return true; }
  int64_t y_cols() const override { return s_.in; }
  int tp_collectives() const override { return tp_ > 1 ? 1 : 0; }
  void run(const tppp_tensor& x, int64_t m, void* y, void* stream) override {
    if (be_->mem_kind() == TPPP_MEM_HOST) check_ids(x, m);  // device ids are not read back: out-of-vocab rows are 0
    const Part& p = part0();
    be_->embedding(x.data, x.dtype, m, p.table, r_ * p.n, p.n, p.k, y, s_.dtype, stream);
    if (tp_ > 1)
      transport().all_reduce(tp_comm(), y, y, static_cast<size_t>(m * p.k), s_.dtype, TPPP_OP_SUM, place(stream));
  }

 private:
  void check_ids(const tppp_tensor& x, int64_t m) const {
    for (int64_t i = 0; i < m; i++) {
      const int64_t id = x.dtype == TPPP_DTYPE_I64 ? static_cast<const int64_t*>(x.data)[i]
                                                   : static_cast<const int32_t*>(x.data)[i];
      need(id >= 0 && id < s_.vocab, "EMBEDDING layer: token id %lld at position %lld is outside [0, %lld)",
           static_cast<long long>(id), static_cast<long long>(i), static_cast<long long>(s_.vocab));
    }
  }
};

class LmHead final : public TpLayer {
 public:
  LmHead(Group& g, const LayerSpec& s) : TpLayer(g, s) {
    need(s.vocab > 0, "%s layer: vocab_size must be positive", name());
  }
  std::vector<int64_t> weight_shape(int) const override { return {(s_.vocab + tp_ - 1) / tp_, s_.in}; }
  void argmax(const tppp_tensor& x, const tppp_tensor& ids, void* stream) override;
  const void* local_logits(const void* x, int64_t m, int64_t* per, int64_t* c0, int64_t* valid,
                           void* stream) override {
    check_bound("local logits");
    count_call();
    const Part& p = part0();
    *per = p.n;
    *c0 = r_ * p.n;
    *valid = std::max<int64_t>(0, std::min(p.n, s_.vocab - *c0));
    return local_logits(x, m, stream);
  }

 protected:
  int64_t y_cols() const override { return s_.vocab; }
  bool y_optional() const override { return s_.gather_to_rank0 && r_ != 0; }
  // The gather to TP rank 0 is p2p, tagged with the call's number instead (tags.hpp).
  int tp_collectives() const override { return s_.gather_to_rank0 ? 0 : 1; }
  void run(const tppp_tensor& x, int64_t m, void* y, void* stream) override;

 private:
  // This rank's logits [M, ceil(V/tp)] into scratch 0.
  char* local_logits(const void* x, int64_t m, void* stream) {
    const Part& p = part0();
    char* out = scratch(0, static_cast<size_t>(m * p.n) * es(), stream);
    be_->linear(x, *p.w, nullptr, out, m, p.n, s_.dtype, s_.dtype, stream);
    return out;
  }
  // Block [M, per] of rank t into its columns of y[M, V] (the padding past V dropped).
  void place_block(int t, const char* block, int64_t m, void* y, void* stream) {
    const int64_t per = part0().n, c0 = t * per, cols = std::max<int64_t>(0, std::min(per, s_.vocab - c0));
    if (cols > 0)
      be_->copy2d(static_cast<char*>(y) + static_cast<size_t>(c0) * es(), static_cast<size_t>(s_.vocab) * es(), block,
                  static_cast<size_t>(per) * es(), static_cast<size_t>(cols) * es(), static_cast<size_t>(m), stream);
  }
};

void LmHead::run(const tppp_tensor& x, int64_t m, void* y, void* stream) {
  char* mine = local_logits(x.data, m, stream);
  const size_t blk = static_cast<size_t>(m * part0().n), bytes = blk * es();
  if (!s_.gather_to_rank0) {
    char* all = scratch(1, bytes * static_cast<size_t>(tp_), stream);
    transport().all_gather(tp_comm(), mine, all, blk, s_.dtype, place(stream));
    for (int t = 0; t < tp_; t++) place_block(t, all + static_cast<size_t>(t) * bytes, m, y, stream);
  } else if (r_ != 0) {
    transport().isend(tp_comm(), 0, tags::lm_head_gather(calls()), mine, bytes, place(stream))->wait();
  } else {
    place_block(0, mine, m, y, stream);
    char* in = scratch(1, bytes * static_cast<size_t>(tp_ - 1), stream);  // one block per sender
    for (int t = 1; t < tp_; t++) {
      char* at = in + static_cast<size_t>(t - 1) * bytes;
      transport().irecv(tp_comm(), t, tags::lm_head_gather(calls()), at, bytes, place(stream))->wait();
      place_block(t, at, m, y, stream);
    }
  }
}

void LmHead::argmax(const tppp_tensor& x, const tppp_tensor& ids, void* stream) {
  count_call();
  try {  // one all_gather: a failed check or no rows is told to the TP peers
    check_tensor(x, "tppp_layer_argmax", "x");
    check_tensor(ids, "tppp_layer_argmax", "ids");
    g_.check_live("tppp_layer_argmax");
    check_bound("argmax");
    need(x.data && x.dtype == s_.dtype && x.ndim == 2 && x.shape[1] == s_.in && x.strides == nullptr,
         "LM_HEAD argmax: x must be contiguous [M, %lld] of %s", static_cast<long long>(s_.in), dtype_name(s_.dtype));
    need(ids.data && ids.dtype == TPPP_DTYPE_I64 && ids.ndim == 1 && ids.shape[0] == x.shape[0],
         "LM_HEAD argmax: ids must be I64 [%lld]", static_cast<long long>(x.shape[0]));
    check_memory(x, "x");
    check_memory(ids, "ids");
  } catch (const Error& e) {
    skip_collectives(e.status(), 1);
    throw;
  }
  const int64_t m = x.shape[0];
  if (m == 0) {
    skip_collectives(TPPP_OK, 1);
    return;
  }
  const char* logits = local_logits(x.data, m, stream);
  const Part& p = part0();
  const int64_t c0 = r_ * p.n, valid = std::max<int64_t>(0, std::min(p.n, s_.vocab - c0));
  // Only (max, index) per row crosses the wire: cand[M] here, all[tp][M] after the gather.
  const size_t cb = static_cast<size_t>(m) * sizeof(ArgmaxCand);
  ArgmaxCand* mine = reinterpret_cast<ArgmaxCand*>(scratch(1, cb, stream));
  ArgmaxCand* all = reinterpret_cast<ArgmaxCand*>(scratch(3, cb * static_cast<size_t>(tp_), stream));
  be_->argmax_rows(logits, m, p.n, valid, c0, s_.dtype, mine, stream);
  transport().all_gather(tp_comm(), mine, all, cb, TPPP_DTYPE_U8, place(stream));
  be_->argmax_merge(all, tp_, m, static_cast<int64_t*>(ids.data), stream);
}

}  // namespace

std::unique_ptr<TpLayer> make_embedding(Group& g, const LayerSpec& s) {
  return std::unique_ptr<TpLayer>(new Embedding(g, s));
}
std::unique_ptr<TpLayer> make_lm_head(Group& g, const LayerSpec& s) { return std::unique_ptr<TpLayer>(new LmHead(g, s)); }

}  // namespace tppp
