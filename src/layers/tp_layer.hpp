// Tensor-parallel layers of a Llama/Qwen2 block (docs/DESIGN.md section 5),
// on any Backend, communicating over the group's TP scope. TpLayer holds
// what every kind shares (this rank's weight parts, scratch, argument
// checks); each kind is one small subclass (layers/linear.cpp, mlp.cpp,
// vocab.cpp) registered in the kind table in layers/registry.cpp. Per rank:
//   COLUMN     W[out/tp, in]  b[out/tp]     y[M, out/tp] (or gathered [M, out])
//   ROW        W[out, in/tp]  b[out]        x[M, in/tp] (or [M, in], split here);
//                                           partial sums all-reduced, bias after
//   REPLICATED W[out, in]     b[out]
//   GATE_UP    W[2*I/tp, H] = [gate_r; up_r]  y[M, I/tp] = silu(gate) * up
//   QKV        W[(nh/tp + 2*kv_r)*hd, H] (kv_r = nkv/tp, or 1 replicated head
//              when nkv < tp), optional bias (Qwen2)
//   EMBEDDING  W[ceil(V/tp), H]  ids[M] -> y[M, H]: rows of other ranks are 0,
//              then all-reduce
//   LM_HEAD    W[ceil(V/tp), H]  x[M, H] -> logits [M, V] on every TP rank or
//              on TP rank 0; distributed greedy argmax exchanges (max, index)
//   MLP        GATE_UP then ROW(down, input_is_parallel): x[M,H] -> y[M,H]
// x, y and ids live in the backend's memory (host for the CPU backend, the
// group's CUDA device for the CUDA backend); work is queued on `stream`.
// Layers take tensors, never checkpoint names (the loader resolves those).
// Once a forward has run with the largest M, later forwards allocate nothing
// and (with NCCL, or TP=1) can be captured into a CUDA graph.
#pragma once
#include <cstdarg>
#include <cstdint>
#include <memory>
#include <vector>

#include "backend/backend.hpp"
#include "c_api.h"
#include "transport/transport.hpp"

namespace tppp {

class Group;

enum class LayerKind : int32_t { Column = 0, Row = 1, Replicated = 2, GateUp = 3, Qkv = 4, Embedding = 5, LmHead = 6, Mlp = 7 };

struct LayerSpec {
  LayerKind kind = LayerKind::Column;
  int32_t dtype = TPPP_DTYPE_F32;
  int64_t in = 0, out = 0;            // features (GATE_UP/MLP: in = hidden, out = intermediate)
  bool bias = false;
  bool gather_output = false;         // COLUMN
  bool input_is_parallel = true;      // ROW
  int64_t heads = 0, kv_heads = 0, head_dim = 0;  // QKV
  int64_t vocab = 0;                  // EMBEDDING, LM_HEAD (in = hidden)
  bool gather_to_rank0 = false;       // LM_HEAD
};

const char* layer_kind_name(LayerKind k);

class TpLayer {
 public:
  virtual ~TpLayer();
  const LayerSpec& spec() const { return s_; }
  Group& group() const { return g_; }
  virtual int parts() const { return 1; }  // weights to bind: 2 for MLP
  // This rank's shard shape of part p, and its bias length (0: no bias).
  virtual std::vector<int64_t> weight_shape(int p) const = 0;
  virtual int64_t bias_len(int p) const;
  // Host memory of this rank's shard (any float dtype; converted), or the
  // backend's own memory. view: w and b are backend memory in the layer
  // dtype, used in place (neither copied nor freed: the caller keeps them
  // alive as long as the layer, as the model runtime does with its one
  // weight allocation per rank).
  virtual void bind(int p, const tppp_tensor& w, const tppp_tensor* b, bool view = false);
  // Checks x and y against the kind's shapes, then runs the kind.
  void forward(const tppp_tensor& x, const tppp_tensor* y, void* stream);
  // Counts a call of the kind's own entry point (argmax) like forward does.
  void count_call() { calls_++; }
  // LM_HEAD only: greedy ids [M] (I64) of x[M, hidden].
  virtual void argmax(const tppp_tensor& x, const tppp_tensor& ids, void* stream);
  // LM_HEAD only: this rank's slice of the logits, [M, per] in the layer
  // dtype, backend memory (the layer's scratch, valid until its next call);
  // its columns are vocab ids [c0, c0 + per), the first `valid` real (the
  // rest padding). No communication.
  virtual const void* local_logits(const void* x, int64_t m, int64_t* per, int64_t* c0, int64_t* valid,
                                   void* stream);
  // INVALID_USAGE naming op unless every part is bound.
  virtual void check_bound(const char* op) const;
  // Counts reallocations of this layer's scratch (and its sub-layers'): a
  // CUDA graph captured over the layer replays only while it is unchanged.
  virtual uint64_t scratch_epoch() const { return scratch_epoch_; }
  // ROW over part 0: y[M, out] = sum over TP ranks of x_r W_r^T, + bias once.
  void reduce_rows(const void* x, int64_t m, void* y, void* stream);

 protected:
  TpLayer(Group& g, const LayerSpec& s);
  // Throws INVALID_ARGUMENT with the message unless ok.
  static void need(bool ok, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
  static std::vector<int64_t> shape_of(const tppp_tensor& t);
  // The kind's compute: x [M, x_cols()] (token ids [M] when takes_ids()),
  // y [M, y_cols()] (NULL only when y_optional()); m > 0.
  virtual void run(const tppp_tensor& x, int64_t m, void* y, void* stream) = 0;
  virtual int64_t x_cols() const { return s_.in; }
  virtual int64_t y_cols() const = 0;
  virtual bool takes_ids() const { return false; }
  virtual bool y_optional() const { return false; }
  // TP collectives one call of this kind runs. A call that fails its checks
  // on this rank, or has 0 rows, still counts them and tells the TP peers
  // (Transport::collective_failed), so their call fails instead of pairing
  // with this rank's next one.
  virtual int tp_collectives() const { return 0; }
  void skip_collectives(tppp_status status, int n) const noexcept;
  uint32_t calls() const { return calls_; }  // forward/argmax calls so far, failed ones included

  struct Part {
    std::unique_ptr<PackedWeight> w;  // GEMM kinds
    void* table = nullptr;            // EMBEDDING: rows in backend memory
    void* bias = nullptr;             // backend memory, layer dtype
    int64_t n = 0, k = 0;
    bool owned = true;                // false: table and bias are views (bind with view)
  };
  Part& part0() { return parts_[0]; }
  const Part& part0() const { return parts_[0]; }
  // Host data of t in the layer dtype (converted into tmp when it differs).
  const void* in_layer_dtype(const tppp_tensor& t, size_t n, std::vector<char>* tmp) const;
  void check_memory(const tppp_tensor& t, const char* what) const;
  // Scratch buffer i of at least bytes (backend memory); may allocate only outside a graph capture.
  char* scratch(int i, size_t bytes, void* stream);
  Place place(void* stream) const { return Place{be_->mem_kind(), stream}; }
  Transport& transport() const;
  const Comm& tp_comm() const;
  const char* name() const { return layer_kind_name(s_.kind); }
  size_t es() const;  // bytes per element of the layer dtype

  Group& g_;
  LayerSpec s_;
  std::shared_ptr<Backend> be_;  // the group's: one cuBLASLt handle, pool and plan cache per group
  int tp_ = 1, r_ = 0;

 private:
  void check_forward(const tppp_tensor& x, const tppp_tensor* y) const;
  uint32_t calls_ = 0;
  uint64_t scratch_epoch_ = 0;
  std::vector<Part> parts_;  // this layer's own weight (part 0)
  std::vector<void*> owned_weights_;  // copies of device weights bound without view
  struct Scratch {
    void* p = nullptr;  // backend memory
    size_t bytes = 0;
  };
  std::vector<Scratch> scratch_;  // grows to the largest M seen, then reused (nothing allocates when warm)
};

// Builds the layer of s.kind (the kind table). Throws INVALID_ARGUMENT naming
// the field when a dimension does not split over the group's TP size.
std::unique_ptr<TpLayer> make_layer(Group& g, const LayerSpec& s);

}  // namespace tppp
