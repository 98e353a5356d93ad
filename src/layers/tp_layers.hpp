// Tensor-parallel layers of a Llama/Qwen2 block (DESIGN section 5), on any
// Backend, communicating over the group's TP scope. One class covers the
// kinds; each rank holds its shard:
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
// Once a forward has run with the largest M, later forwards allocate nothing
// and (with NCCL, or TP=1) can be captured into a CUDA graph.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.hpp"
#include "c_api.h"

namespace tppp {

class Group;
class Checkpoint;

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

class TpLayer {
 public:
  // Throws INVALID_ARGUMENT naming the field when a dimension does not split.
  TpLayer(Group& g, const LayerSpec& s);
  ~TpLayer();
  const LayerSpec& spec() const { return s_; }
  int parts() const;  // weights to bind: 2 for MLP, else 1
  // This rank's shard shapes for part p.
  std::vector<int64_t> weight_shape(int p) const;
  int64_t bias_len(int p) const;  // 0: no bias
  // Host memory of this rank's shard (any float dtype; converted).
  void bind(int p, const tppp_tensor& w, const tppp_tensor* b);
  // Reads this rank's slices by HF name: prefix "model.layers.0.mlp" etc.
  void bind_checkpoint(const Checkpoint& c, const std::string& prefix);
  void forward(const tppp_tensor& x, const tppp_tensor* y, void* stream);
  void argmax(const tppp_tensor& x, const tppp_tensor& ids, void* stream);

 private:
  struct Part;
  void check_bound(const char* op) const;
  void check_memory(const tppp_tensor& t, const char* kind, const char* what) const;
  void reduce_rows(const void* x, int64_t m, void* y, void* stream);
  // Scratch buffer i of at least bytes (backend memory); may allocate only outside a graph capture.
  char* scratch(int i, size_t bytes, void* stream);
  void local_logits(const void* x, int64_t m, void* stream);

  Group& g_;
  LayerSpec s_;
  std::shared_ptr<Backend> be_;  // the group's: one cuBLASLt handle, pool and plan cache per group
  int tp_ = 1, r_ = 0;
  std::vector<std::unique_ptr<Part>> parts_;
  struct Scratch {
    void* p = nullptr;  // backend memory
    size_t bytes = 0;
  };
  std::vector<Scratch> scratch_;  // grows to the largest M seen, then reused (nothing allocates when warm)
  std::unique_ptr<TpLayer> down_;  // MLP: the ROW (down_proj) layer
};

}  // namespace tppp
