// Backend: the compute seam (docs/DESIGN.md section 1). Memory, copies and the few
// ops the TP layers need. The CPU implementation (backend/cpu) is the oracle
// every other backend is tested against; registry.cpp picks one per device.
// Shapes are row-major; "x[M,K]" is M rows of K elements. Activations and
// outputs share the layer's dtype (F32, F16, BF16); arithmetic is f32.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace tppp {

// One row's candidate of the distributed greedy argmax: 16 bytes, the same
// layout in host memory, device memory and on the wire (kernels/tppp_kernels.h
// has the device twin).
struct ArgmaxCand {
  float value;
  int32_t pad;
  int64_t index;  // INT64_MAX: no column
};
static_assert(sizeof(ArgmaxCand) == 16, "ArgmaxCand is exchanged as bytes");

// A weight matrix W[N,K] prepared for the backend's GEMM (the CPU: panels
// in the checkpoint's dtype, cpu/gemm.hpp; CUDA: a device copy in the
// compute dtype).
class PackedWeight {
 public:
  virtual ~PackedWeight() = default;
  int64_t n = 0, k = 0;
};

// A batch's attention cut into runs (FlashInfer's "requests"): maximal
// spans of consecutive tokens of one sequence at consecutive positions.
// Run r is tokens [qo_indptr[r], qo_indptr[r+1]) and sees the pages
// kv_indices[kv_indptr[r] ...] of which the last holds kv_last[r] tokens;
// causal, with the last token aligned to the run's last position. Host
// memory, plain data (model/kv_cache.cpp, attn_runs).
struct AttnRuns {
  std::vector<int32_t> qo_indptr;   // [R + 1]
  std::vector<int32_t> kv_indptr;   // [R + 1]
  std::vector<int32_t> kv_indices;  // each run's pages, in order
  std::vector<int32_t> kv_last;     // [R], 1..page_size
  bool decode = false;              // every run is one token
  int32_t runs() const { return static_cast<int32_t>(kv_last.size()); }
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;
  virtual int32_t mem_kind() const = 0;  // TPPP_MEM_*
  virtual void* alloc(size_t bytes) = 0;  // backend memory; throws OUT_OF_MEMORY
  virtual void free(void* p) noexcept = 0;
  // Stream-ordered copies; either side may be host or backend memory.
  virtual void copy(void* dst, const void* src, size_t bytes, void* stream) = 0;
  // rows x width bytes, from src (row pitch spitch) to dst (row pitch dpitch).
  virtual void copy2d(void* dst, size_t dpitch, const void* src, size_t spitch, size_t width, size_t rows,
                      void* stream) = 0;
  // Waits for the work queued on stream (host backends: nothing to wait for).
  virtual void sync(void* stream) = 0;
  // Streams and events that order work across streams (the pipeline's
  // communication stream against compute). Host backends: nullptr, no-ops.
  // blocking: the stream also orders against the legacy default stream.
  virtual void* stream_create(bool blocking = false) {
    (void)blocking;
    return nullptr;
  }
  virtual void stream_destroy(void* stream) noexcept { (void)stream; }
  virtual void* event_create() { return nullptr; }
  virtual void event_destroy(void* ev) noexcept { (void)ev; }
  virtual void event_record(void* ev, void* stream) { (void)ev, (void)stream; }
  virtual void stream_wait_event(void* stream, void* ev) { (void)stream, (void)ev; }
  // CUDA graphs: capture the work queued on stream between begin and end
  // (nothing may allocate or synchronise meanwhile), then launch it again
  // and again. Host backends: no graphs (graph_begin returns false).
  virtual bool graph_begin(void* stream) {
    (void)stream;
    return false;
  }
  // The instantiated graph; nullptr (capture abandoned) when ok is false.
  virtual void* graph_end(void* stream, bool ok) {
    (void)stream, (void)ok;
    return nullptr;
  }
  virtual void graph_launch(void* exec, void* stream) { (void)exec, (void)stream; }
  virtual void graph_destroy(void* exec) noexcept { (void)exec; }
  // Is stream being captured into a CUDA graph (then nothing may allocate)?
  virtual bool capturing(void* stream) const { (void)stream; return false; }
  // w_host: N*K elements of w_dtype in host memory; the GEMM runs on
  // activations of compute_dtype.
  virtual std::unique_ptr<PackedWeight> pack(const void* w_host, int32_t w_dtype, int64_t n, int64_t k,
                                             int32_t compute_dtype) = 0;
  // W[N,K] already in backend memory in compute_dtype, used in place (not
  // copied, not freed: the caller keeps it alive as long as the weight).
  // Backends without device memory of their own throw NOT_SUPPORTED.
  virtual std::unique_ptr<PackedWeight> view_weight(const void* w, int64_t n, int64_t k, int32_t compute_dtype);
  // y[M, :N] (row stride ldy) = x[M,K] W^T + bias[N] (bias may be NULL).
  // x and bias are in `dtype`; y in y_dtype (F32 keeps partial sums exact
  // until a reduction; else equal to dtype).
  virtual void linear(const void* x, const PackedWeight& w, const void* bias, void* y, int64_t m, int64_t ldy,
                      int32_t dtype, int32_t y_dtype, void* stream) = 0;
  // dst[n] (ddt) = src[n] (sdt), float dtypes.
  virtual void convert(const void* src, int32_t sdt, void* dst, int32_t ddt, size_t n, void* stream) = 0;
  // gu[M, 2I] = [gate | up] -> out[M, I] = silu(gate) * up.
  virtual void silu_mul(const void* gu, void* out, int64_t m, int64_t i, int32_t dtype, void* stream) = 0;
  // y[M,N] (y_dtype) += bias[N] (dtype).
  virtual void add_bias(void* y, const void* bias, int64_t m, int64_t n, int32_t dtype, int32_t y_dtype,
                        void* stream) = 0;
  // out[M,H] = table[ids[m] - row0] for ids in [row0, row0 + rows), else 0.
  virtual void embedding(const void* ids, int32_t id_dtype, int64_t m, const void* table, int64_t row0, int64_t rows,
                         int64_t h, void* out, int32_t dtype, void* stream) = 0;
  // Per row of logits[M,N]: the max over the first valid_n columns and its
  // index (+ index_offset) into out[M] (backend memory); ties pick the
  // smallest index, a number beats NaN.
  virtual void argmax_rows(const void* logits, int64_t m, int64_t n, int64_t valid_n, int64_t index_offset,
                           int32_t dtype, ArgmaxCand* out, void* stream) = 0;
  // ids[r] = best of cand[t*M + r] over t < parts (same rule); backend memory.
  virtual void argmax_merge(const ArgmaxCand* cand, int parts, int64_t m, int64_t* ids, void* stream) = 0;

  // ---- decoder ops (docs/DESIGN.md section 9); f32 arithmetic, tensors in
  // `dtype`, index arrays (I32) and inv_freq (F32) in backend memory. A
  // backend that lacks one throws NOT_SUPPORTED naming it (the defaults).
  // residual NULL: out[M,H] = x / rms(x) * w[H]. Else residual[M,H] += x
  // first (rounded to dtype, as transformers keeps it), then out = the norm
  // of residual. eps inside the root.
  virtual void rms_norm(const void* x, void* residual, const void* w, void* out, int64_t m, int64_t h, float eps,
                        int32_t dtype, void* stream);
  // In place on n heads of d elements per row (row stride ld elements): each
  // head normed with w[d] (Qwen3's q/k norm).
  virtual void head_rms_norm(void* x, int64_t m, int64_t n, int64_t d, int64_t ld, const void* w, float eps,
                             int32_t dtype, void* stream);
  // In place, rotate-half RoPE of n heads [M, n, d] at row stride ld: pairs
  // (i, i + d/2) turn by pos[m] * inv_freq[i] (f32 angle, as transformers).
  virtual void rope(void* x, int64_t m, int64_t n, int64_t d, int64_t ld, const int32_t* pos, const float* inv_freq,
                    int32_t dtype, void* stream);
  // Paged KV cache, FlashInfer's NHD layout: k_cache/v_cache [pages,
  // page_size, kvh, d]. Row m of k and v (stride ld) goes to slot[m] =
  // page * page_size + offset.
  virtual void kv_write(const void* k, const void* v, int64_t ld, int64_t m, int64_t kvh, int64_t d,
                        const int32_t* slot, void* k_cache, void* v_cache, int32_t dtype, void* stream);
  // out[M, nh*d] = softmax(scale q k^T) v per head; token t sees kv_len[t]
  // cached positions, held by pages[page_off[t] ...] in order (page_size
  // each); q head h reads kv head h / (nh / kvh). q rows at stride ldq.
  // Called once per batch, before the layers' attention calls of that
  // batch (same shapes): a backend may plan its kernels from the runs
  // (CUDA: FlashInfer's scheduler). Default: nothing to plan.
  // for_graph: the attention calls that follow will be captured in a CUDA
  // graph and replayed after later plans of the same shape (FlashInfer's
  // CUDA-graph mode: fixed grids).
  virtual void attention_plan(const AttnRuns& runs, int64_t m, int64_t nh, int64_t kvh, int64_t d,
                              int64_t page_size, int32_t dtype, void* stream, bool for_graph = false) {
    (void)runs, (void)m, (void)nh, (void)kvh, (void)d, (void)page_size, (void)dtype, (void)stream, (void)for_graph;
  }
  // Called once before any batch: batches hold at most max_rows rows (so
  // runs) and list about max_pages pages, so a backend sizes what
  // attention_plan fills once (CUDA: the run arrays a graph bakes in).
  virtual void attention_reserve(int64_t max_rows, int64_t max_pages) { (void)max_rows, (void)max_pages; }
  // A value that changes whenever what attention() would launch changes
  // (the plan's buffers and shapes): a captured graph replays only while it
  // is the same.
  virtual uint64_t attention_signature() const { return 0; }
  virtual void attention(const void* q, int64_t ldq, int64_t m, int64_t nh, int64_t kvh, int64_t d,
                         const void* k_cache, const void* v_cache, int64_t page_size, const int32_t* kv_len,
                         const int32_t* page_off, const int32_t* pages, float scale, void* out, int32_t dtype,
                         void* stream);
};

// The tie rule shared by every backend: does (av, ai) beat (bv, bi)?
inline bool argmax_better(float av, int64_t ai, float bv, int64_t bi) {
  if (bv != bv) return av == av || ai < bi;  // b is NaN
  if (av != av) return false;
  return av > bv || (av == bv && ai < bi);
}

std::unique_ptr<Backend> create_cpu_backend();
// device: a CUDA ordinal (CUDA builds; throws NOT_SUPPORTED naming why
// otherwise). timeout_ms bounds each wait for the device (sync, uploads).
std::unique_ptr<Backend> create_cuda_backend(int device, int timeout_ms = 60000);
// device -1: CPU; a CUDA ordinal: the CUDA backend.
std::shared_ptr<Backend> create_backend(int device, int timeout_ms);

}  // namespace tppp
