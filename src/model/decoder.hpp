// One pipeline stage of a Llama/Qwen2/Qwen3 decoder on one TP rank: its
// layers' TP layers (QKV, o_proj, MLP), norm weights and paged KV memory,
// the vocab-parallel embedding on the first stage and the final norm and
// LM head on the last. Runs a batch's tokens through this stage:
//   h = embed(ids)                                   (first stage)
//   per layer: x = norm(residual += h); q,k,v = qkv(x); q,k = norm_heads
//              (Qwen3); rope(q, k); cache k,v; a = attention; h = o_proj(a);
//              x = norm(residual += h); h = mlp(x)
//   x = norm(residual += h); logits = lm_head(x[wanted])   (last stage)
// Stages hand over (h, residual), as SGLang's pp_proxy_tensors.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <utility>
#include <vector>

#include "layers/tp_layer.hpp"
#include "loader/checkpoint.hpp"
#include "loader/module_weights.hpp"
#include "loader/weights.hpp"
#include "model/kv_cache.hpp"
#include "model/model_config.hpp"

namespace tppp {

class Group;

// Backend memory that grows to the largest request and is then reused.
class DevBuf {
 public:
  DevBuf() = default;
  DevBuf(const DevBuf&) = delete;
  DevBuf& operator=(const DevBuf&) = delete;
  ~DevBuf();
  void* get(Backend& be, size_t bytes);
  void* data() const { return p_; }
  void swap(DevBuf& o) noexcept {
    std::swap(be_, o.be_);
    std::swap(p_, o.p_);
    std::swap(n_, o.n_);
  }

 private:
  Backend* be_ = nullptr;
  void* p_ = nullptr;
  size_t n_ = 0;
};

class StageDecoder {
 public:
  // max_rows: the most rows a batch holds (max_batch). split: layers per
  // stage (empty: balanced by weight bytes, LM head included).
  StageDecoder(Group& g, const Checkpoint& c, const ModelSpec& spec, int32_t dtype, int32_t num_pages,
               int32_t page_size, int32_t max_rows, const std::vector<int64_t>& split);
  ~StageDecoder();
  bool first() const { return first_; }
  bool last() const { return last_; }
  int64_t layer_begin() const { return begin_; }
  int64_t layer_end() const { return end_; }
  int32_t dtype() const { return dt_; }
  // The stream every op of this stage is queued on (CUDA: a blocking stream
  // of the decoder's; host: nullptr). Hand-overs of hidden() and residual()
  // are ordered on it.
  void* stream() const { return st_; }
  // CUDA graphs captured, and decode steps replayed from one, so far.
  int64_t graph_captures() const { return graph_captures_; }
  int64_t graph_replays() const { return graph_replays_; }
  size_t row_bytes() const;  // one row of hidden (or residual)

  // The batch's activations on this rank: hidden and residual [n, H] in the
  // compute dtype, backend memory (what stages hand over).
  void* hidden() const { return hidden_.data(); }
  void* residual() const { return residual_.data(); }
  // Trades the activation buffers with h and r (no copy): a received
  // micro-batch goes in, a finished one comes out to be sent.
  void swap_acts(DevBuf& h, DevBuf& r) noexcept {
    hidden_.swap(h);
    residual_.swap(r);
  }
  // Sizes the buffers for n tokens and uploads the batch's indices.
  void prepare(const BatchView& b, const KvPlan& kv);
  // First stage: hidden = the tokens' embeddings (residual not yet started).
  void embed(const BatchView& b);
  // This stage's layers over hidden/residual in place. residual_started:
  // false on the first stage (the first layer starts it from hidden). A
  // decode batch on a CUDA stage replays the CUDA graph of its batch-size
  // bucket (TPPP_CUDA_GRAPHS; PP = 1, TP collectives on the stream).
  void run_layers(int64_t n, bool residual_started);
  // Last stage: final norm of the wanted rows, then (want_logits, the same
  // on every TP rank) logits [w, vocab] f32 into `logits` on TP rank 0
  // (host memory), and/or (ids non-NULL on every TP rank) greedy ids [w]
  // into ids (host). Collective over TP.
  void head(const KvPlan& kv, bool want_logits, float* logits, int64_t* ids);
  // Last stage: this TP rank's slice of the wanted rows' logits, f32 [w, per]
  // on the host; vocab ids [c0, c0 + per), the first `valid` real. No
  // communication (the per-rank sampler's candidates, stream.cpp).
  void head_local(const KvPlan& kv, std::vector<float>* out, int64_t* per, int64_t* c0, int64_t* valid);

 private:
  struct Layer {
    std::unique_ptr<TpLayer> qkv, o, mlp;
    void *in_norm = nullptr, *post_norm = nullptr, *q_norm = nullptr, *k_norm = nullptr;  // backend, dtype
    void *k_cache = nullptr, *v_cache = nullptr;  // [pages, page_size, kv_r, head_dim], dtype
  };
  void* upload(const HostTensor& t);
  tppp_tensor tensor(void* p, int32_t dtype, int64_t rows, int64_t cols) const;
  void attention_block(Layer& L, int64_t n);
  // norm(residual += hidden) of the wanted rows, [w, hidden] backend memory.
  const void* final_rows(const KvPlan& kv);
  void layers(int64_t n, bool residual_started);  // eager (or being captured)
  uint64_t graph_signature() const;
  static constexpr int64_t kGraphMaxRows = 64;
  struct Graph {
    void* exec = nullptr;  // instantiated graph
    uint64_t sig = 0;      // graph_signature() when captured
    bool warm = false;     // one eager run at this bucket done
  };
  int64_t graph_captures_ = 0, graph_replays_ = 0;

  Group& g_;
  ModelSpec spec_;
  std::shared_ptr<Backend> be_;
  int32_t dt_;
  int64_t tp_, hq_, kvr_, hd_, qkv_cols_;
  int32_t page_size_;
  int32_t num_pages_ = 0;  // pages the book hands out; CUDA caches hold one more (scratch)
  void* st_ = nullptr;     // CUDA: the stage's stream
  bool graphs_ = false;    // decode steps may replay CUDA graphs
  int64_t graph_rows_ = 0; // this batch's bucket (0: eager)
  std::map<std::pair<int64_t, bool>, Graph> graph_;  // (bucket, residual started) -> graph
  bool first_, last_;
  int64_t begin_, end_;
  std::vector<int64_t> split_;  // layers per stage
  // CUDA groups: every weight of this rank in one device allocation that the
  // layers and norms below use in place (declared first: destroyed last).
  std::unique_ptr<WeightSet> weights_;
  std::vector<Layer> layers_;
  std::unique_ptr<TpLayer> embed_, lm_head_;
  void* final_norm_ = nullptr;
  void* inv_freq_ = nullptr;  // [head_dim / 2] f32
  std::vector<void*> owned_;  // backend allocations freed at destruction
  // Per-batch buffers (backend memory).
  DevBuf hidden_, residual_, normed_, qkv_, attn_, ids_, pos_, slot_, kv_len_, page_off_, pages_, wanted_x_;
  DevBuf logits_, f32_scratch_;  // logits in the compute dtype; f32 logits or I64 ids on their way to the host
  int64_t n_ = 0;
};

}  // namespace tppp
