// CUDA backend: device memory from a caching allocator, GEMMs through
// cuBLASLt (bf16/f16 with f32 accumulation, f32 with tf32 only when asked via
// TPPP_ALLOW_TF32=1, bias fused as an epilogue), one plan per (shape, dtype,
// alignment) chosen by the heuristic and cached (TPPP_CUBLASLT_AUTOTUNE=1
// times the top candidates once instead), a workspace owned by the backend,
// and the elementwise ops from kernels/. Everything on the forward path is
// stream-ordered and allocation-free once warm, so it can be graph-captured.
#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "backend/backend.hpp"
#include "backend/cuda/cuda_attention.hpp"
#include "backend/cuda/plan_cache.hpp"
#include "c_api.h"
#include "core/dtype.hpp"
#include "core/env.hpp"
#include "core/log.hpp"
#include "cuda/caching_allocator.hpp"
#include "cuda/cuda_check.hpp"
#include "tppp_kernels.h"

namespace tppp {
namespace {

static_assert(sizeof(tppp_kernels::ArgmaxCand) == sizeof(ArgmaxCand), "host and device argmax layouts differ");


void check_cublas(cublasStatus_t e, const char* what) {
  if (e != CUBLAS_STATUS_SUCCESS) fail(TPPP_ERR_CUDA, "%s: cuBLASLt status %d", what, static_cast<int>(e));
}

cudaDataType_t cuda_type(int32_t dt) {
  switch (dt) {
    case TPPP_DTYPE_F32: return CUDA_R_32F;
    case TPPP_DTYPE_F16: return CUDA_R_16F;
    case TPPP_DTYPE_BF16: return CUDA_R_16BF;
    default: fail(TPPP_ERR_INVALID_ARGUMENT, "cuda backend: dtype %s is not F32, F16 or BF16", dtype_name(dt));
  }
}

int32_t align_of(const void* p) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  if (!a) return 256;
  const uintptr_t low = a & (~a + 1);
  return static_cast<int32_t>(std::min<uintptr_t>(low, 256));
}

class CudaWeight final : public PackedWeight {
 public:
  explicit CudaWeight(CachingAllocator& a) : alloc(a) {}
  ~CudaWeight() override {
    if (owned) alloc.free(w);
  }
  CachingAllocator& alloc;
  void* w = nullptr;  // [n, k] of dtype, device
  int32_t dtype = 0;
  bool owned = true;  // false: a view of memory the caller keeps (view_weight)
};

// Descriptors and the chosen algorithm of one GEMM shape.
struct GemmPlan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo{};
  std::vector<cublasLtMatmulAlgo_t> candidates;  // the heuristic's top picks, best first
  bool tuned = false;
  ~GemmPlan() {
    if (c) cublasLtMatrixLayoutDestroy(c);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (desc) cublasLtMatmulDescDestroy(desc);
  }
};

class CudaBackend final : public Backend {
 public:
  CudaBackend(int device, int timeout_ms)
      : dev_(device), timeout_ms_(timeout_ms), alloc_(raw_allocator()), tf32_(env_flag(Env::AllowTf32)),
        autotune_(env_flag(Env::CublasLtAutotune)) {
    DeviceScope ds(dev_);
    check_cublas(cublasLtCreate(&lt_), "cublasLtCreate");
    check_cuda(cudaMalloc(&ws_, kWorkspace), "cuda backend: cudaMalloc of the cuBLASLt workspace");
    check_cuda(cudaStreamCreateWithFlags(&own_, cudaStreamNonBlocking), "cuda backend: cudaStreamCreate");
  }
  ~CudaBackend() override {
    DeviceScope ds(dev_);
    cudaDeviceSynchronize();  // nothing queued may still use what is freed below
    plans_.reset();
    attn_.reset();
    if (own_) cudaStreamDestroy(own_);
    if (ws_) cudaFree(ws_);
    if (lt_) cublasLtDestroy(lt_);
    alloc_.release_cached();  // after the synchronize every fence has passed: nothing stays pending
    std::lock_guard<std::mutex> lk(ev_mu_);
    for (cudaEvent_t e : events_) cudaEventDestroy(e);
    events_.clear();
  }

  const char* name() const override { return "cuda"; }
  int32_t mem_kind() const override { return TPPP_MEM_CUDA; }
  void* alloc(size_t bytes) override {
    DeviceScope ds(dev_);
    return alloc_.alloc(bytes);
  }
  void free(void* p) noexcept override {
    try {
      DeviceScope ds(dev_);
      alloc_.free(p);
    } catch (const std::exception& e) {
      TPPP_LOG(TPPP_LOG_ERROR, "%s", e.what());
    }
  }
  void copy(void* dst, const void* src, size_t bytes, void* stream) override {
    if (!bytes) return;
    DeviceScope ds(dev_);
    const Tail tail = use(stream);
    check_cuda(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, as_stream(stream)), "cuda backend: cudaMemcpyAsync");
  }
  void copy2d(void* dst, size_t dpitch, const void* src, size_t spitch, size_t width, size_t rows,
              void* stream) override {
    if (!width || !rows) return;
    DeviceScope ds(dev_);
    const Tail tail = use(stream);
    check_cuda(cudaMemcpy2DAsync(dst, dpitch, src, spitch, width, rows, cudaMemcpyDefault, as_stream(stream)),
               "cuda backend: cudaMemcpy2DAsync");
  }
  void sync(void* stream) override {
    DeviceScope ds(dev_);
    wait_stream(as_stream(stream), timeout_ms_, "cuda backend: waiting for the stream");
  }
  void* stream_create(bool blocking) override {
    DeviceScope ds(dev_);
    cudaStream_t s = nullptr;
    check_cuda(cudaStreamCreateWithFlags(&s, blocking ? cudaStreamDefault : cudaStreamNonBlocking),
               "cuda backend: cudaStreamCreate");
    return s;
  }
  bool graph_begin(void* s) override {
    DeviceScope ds(dev_);
    // Thread-local mode: other threads (a host's, NCCL's watchdog) may go on
    // with calls a global capture would forbid.
    check_cuda(cudaStreamBeginCapture(as_stream(s), cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture");
    return true;
  }
  void* graph_end(void* s, bool ok) override {
    DeviceScope ds(dev_);
    cudaGraph_t g = nullptr;
    const cudaError_t e = cudaStreamEndCapture(as_stream(s), &g);
    if (!ok || e != cudaSuccess) {
      if (g) cudaGraphDestroy(g);
      cudaGetLastError();
      if (ok) check_cuda(e, "cudaStreamEndCapture");
      return nullptr;
    }
    cudaGraphExec_t x = nullptr;
    const cudaError_t ie = cudaGraphInstantiate(&x, g, 0);
    cudaGraphDestroy(g);
    check_cuda(ie, "cudaGraphInstantiate");
    return x;
  }
  void graph_launch(void* x, void* s) override {
    DeviceScope ds(dev_);
    const Tail tail = use(s);
    check_cuda(cudaGraphLaunch(static_cast<cudaGraphExec_t>(x), as_stream(s)), "cudaGraphLaunch");
  }
  void graph_destroy(void* x) noexcept override {
    if (x) cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(x));
  }
  void stream_destroy(void* s) noexcept override {
    if (s) cudaStreamDestroy(as_stream(s));
  }
  void* event_create() override {
    DeviceScope ds(dev_);
    cudaEvent_t e = nullptr;
    check_cuda(cudaEventCreateWithFlags(&e, cudaEventDisableTiming), "cuda backend: cudaEventCreate");
    return e;
  }
  void event_destroy(void* e) noexcept override {
    if (e) cudaEventDestroy(static_cast<cudaEvent_t>(e));
  }
  void event_record(void* e, void* s) override {
    DeviceScope ds(dev_);
    check_cuda(cudaEventRecord(static_cast<cudaEvent_t>(e), as_stream(s)), "cuda backend: cudaEventRecord");
  }
  void stream_wait_event(void* s, void* e) override {
    DeviceScope ds(dev_);
    check_cuda(cudaStreamWaitEvent(as_stream(s), static_cast<cudaEvent_t>(e), 0), "cuda backend: cudaStreamWaitEvent");
  }
  bool capturing(void* stream) const override {
    cudaStreamCaptureStatus st = cudaStreamCaptureStatusNone;
    if (cudaStreamIsCapturing(as_stream(stream), &st) != cudaSuccess) {
      cudaGetLastError();
      return false;
    }
    return st != cudaStreamCaptureStatusNone;
  }

  std::unique_ptr<PackedWeight> pack(const void* w, int32_t wdt, int64_t n, int64_t k, int32_t cdt) override {
    DeviceScope ds(dev_);
    cuda_type(cdt);
    const size_t count = static_cast<size_t>(n * k), bytes = count * dtype_size(cdt);
    std::vector<char> conv;
    const void* src = w;
    if (wdt != cdt) {
      conv.resize(bytes);
      convert_dtype(w, wdt, conv.data(), cdt, count);
      src = conv.data();
    }
    std::unique_ptr<CudaWeight> p(new CudaWeight(alloc_));
    p->n = n;
    p->k = k;
    p->dtype = cdt;
    p->w = alloc_.alloc(bytes);
    // Synchronous on the backend's own stream: bind is not the forward path,
    // and the host buffer may be freed right after.
    check_cuda(cudaMemcpyAsync(p->w, src, bytes, cudaMemcpyHostToDevice, own_), "cuda backend: weight upload");
    wait_stream(own_, timeout_ms_, "cuda backend: weight upload");
    return p;
  }

  std::unique_ptr<PackedWeight> view_weight(const void* w, int64_t n, int64_t k, int32_t cdt) override {
    cuda_type(cdt);
    std::unique_ptr<CudaWeight> p(new CudaWeight(alloc_));
    p->n = n;
    p->k = k;
    p->dtype = cdt;
    p->w = const_cast<void*>(w);
    p->owned = false;
    return p;
  }

  void linear(const void* x, const PackedWeight& pw, const void* bias, void* y, int64_t m, int64_t ldy, int32_t dt,
              int32_t ydt, void* stream) override {
    const CudaWeight& w = static_cast<const CudaWeight&>(pw);
    if (m == 0 || w.n == 0) return;
    if (w.dtype != dt)
      fail(TPPP_ERR_INVALID_ARGUMENT, "cuda backend: weights packed as %s, activations are %s", dtype_name(w.dtype),
           dtype_name(dt));
    DeviceScope ds(dev_);
    const Tail tail = use(stream);
    // Bias fuses as an epilogue when it has the output's dtype; else a kernel adds it.
    const bool fuse_bias = bias && ydt == dt;
    GemmKey key;
    key.m = m;
    key.n = w.n;
    key.k = w.k;
    key.ldy = ldy;
    key.dtype = dt;
    key.y_dtype = ydt;
    key.bias = fuse_bias;
    key.tf32 = dt == TPPP_DTYPE_F32 && tf32_;
    key.align = std::min({align_of(x), align_of(w.w), align_of(y), fuse_bias ? align_of(bias) : 256});
    std::shared_ptr<GemmPlan> plan = plans_->get(key, [&] { return make_plan(key); });
    if (fuse_bias)
      check_cublas(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias),
                   "cuBLASLt: bias pointer");
    if (autotune_ && !plan->tuned && !capturing(stream)) tune(*plan, x, w.w, y, stream);
    run(*plan, plan->algo, x, w.w, y, stream);
    if (bias && !fuse_bias)
      check_cuda(tppp_kernels::add_bias(y, ydt, bias, dt, m, w.n, as_stream(stream)), "kernel add_bias");
  }

  void convert(const void* src, int32_t sdt, void* dst, int32_t ddt, size_t n, void* stream) override {
    DeviceScope ds(dev_);
    const Tail tail = use(stream);
    check_cuda(tppp_kernels::convert(src, sdt, dst, ddt, static_cast<int64_t>(n), as_stream(stream)), "kernel convert");
  }
  void silu_mul(const void* gu, void* out, int64_t m, int64_t i, int32_t dt, void* stream) override {
    DeviceScope ds(dev_);
    const Tail tail = use(stream);
    check_cuda(tppp_kernels::silu_mul(gu, out, m, i, dt, as_stream(stream)), "kernel silu_mul");
  }
  void add_bias(void* y, const void* bias, int64_t m, int64_t n, int32_t dt, int32_t ydt, void* stream) override {
    DeviceScope ds(dev_);
    const Tail tail = use(stream);
    check_cuda(tppp_kernels::add_bias(y, ydt, bias, dt, m, n, as_stream(stream)), "kernel add_bias");
  }
  void embedding(const void* ids, int32_t id_dtype, int64_t m, const void* table, int64_t row0, int64_t rows,
                 int64_t h, void* out, int32_t dt, void* stream) override {
    DeviceScope ds(dev_);
    const Tail tail = use(stream);
    check_cuda(tppp_kernels::embedding(ids, id_dtype, m, table, row0, rows, h, out,
                                       static_cast<int32_t>(dtype_size(dt)), as_stream(stream)),
               "kernel embedding");
  }
  void argmax_rows(const void* logits, int64_t m, int64_t n, int64_t valid_n, int64_t off, int32_t dt,
                   ArgmaxCand* out, void* stream) override {
    DeviceScope ds(dev_);
    const Tail tail = use(stream);
    check_cuda(tppp_kernels::argmax_rows(logits, m, n, valid_n, off, dt,
                                         reinterpret_cast<tppp_kernels::ArgmaxCand*>(out), as_stream(stream)),
               "kernel argmax_rows");
  }
  void argmax_merge(const ArgmaxCand* cand, int parts, int64_t m, int64_t* ids, void* stream) override {
    DeviceScope ds(dev_);
    const Tail tail = use(stream);
    check_cuda(tppp_kernels::argmax_merge(reinterpret_cast<const tppp_kernels::ArgmaxCand*>(cand), parts, m, ids,
                                          as_stream(stream)),
               "kernel argmax_merge");
  }

  // ---- decoder ops (kernels/decoder.cu; attention: cuda_attention.hpp)
  void rms_norm(const void* x, void* residual, const void* w, void* out, int64_t m, int64_t h, float eps, int32_t dt,
                void* stream) override {
    DeviceScope ds(dev_);
    const Tail tail = use(stream);
    check_cuda(tppp_kernels::rms_norm(x, residual, w, out, m, h, eps, dt, as_stream(stream)), "kernel rms_norm");
  }
  void head_rms_norm(void* x, int64_t m, int64_t n, int64_t d, int64_t ld, const void* w, float eps, int32_t dt,
                     void* stream) override {
    DeviceScope ds(dev_);
    const Tail tail = use(stream);
    check_cuda(tppp_kernels::head_rms_norm(x, m, n, d, ld, w, eps, dt, as_stream(stream)), "kernel head_rms_norm");
  }
  void rope(void* x, int64_t m, int64_t n, int64_t d, int64_t ld, const int32_t* pos, const float* inv_freq,
            int32_t dt, void* stream) override {
    DeviceScope ds(dev_);
    const Tail tail = use(stream);
    check_cuda(tppp_kernels::rope(x, m, n, d, ld, pos, inv_freq, dt, as_stream(stream)), "kernel rope");
  }
  void kv_write(const void* k, const void* v, int64_t ld, int64_t m, int64_t kvh, int64_t d, const int32_t* slot,
                void* k_cache, void* v_cache, int32_t dt, void* stream) override {
    DeviceScope ds(dev_);
    const Tail tail = use(stream);
    check_cuda(tppp_kernels::kv_write(k, v, ld, m, kvh, d, slot, k_cache, v_cache,
                                      static_cast<int32_t>(dtype_size(dt)), as_stream(stream)),
               "kernel kv_write");
  }
  void attention_plan(const AttnRuns& runs, int64_t m, int64_t nh, int64_t kvh, int64_t d, int64_t page_size,
                      int32_t dt, void* stream, bool for_graph) override {
    DeviceScope ds(dev_);
    const Tail tail = use(stream);
    attn_->plan(runs, m, nh, kvh, d, page_size, dt, as_stream(stream), for_graph);
  }
  void attention_reserve(int64_t max_rows, int64_t max_pages) override {
    DeviceScope ds(dev_);
    attn_->reserve(max_rows, max_pages);
  }
  uint64_t attention_signature() const override { return attn_->signature(); }
  void attention(const void* q, int64_t ldq, int64_t m, int64_t nh, int64_t kvh, int64_t d, const void* k_cache,
                 const void* v_cache, int64_t page_size, const int32_t* kv_len, const int32_t* page_off,
                 const int32_t* pages, float scale, void* out, int32_t dt, void* stream) override {
    if (d > 256 && !tppp_kernels::fi::supports(dt, d))
      fail(TPPP_ERR_NOT_SUPPORTED, "cuda backend: attention with head_dim %lld (at most 256)", static_cast<long long>(d));
    DeviceScope ds(dev_);
    const Tail tail = use(stream);
    attn_->attention(q, ldq, m, nh, kvh, d, k_cache, v_cache, page_size, kv_len, page_off, pages, scale, out, dt,
                     as_stream(stream));
  }

 private:
  static constexpr size_t kWorkspace = size_t(32) << 20;  // cuBLASLt's recommendation for Hopper

  // Every op records its stream's tail event once it has queued its work. A
  // fence waits on every tail from our own stream: the library never touches
  // a host's stream after the call that was given it has returned (the host
  // may have destroyed it), only events it recorded during such a call.
  class Tail {
   public:
    Tail(CudaBackend* b, cudaStream_t s) : b_(b), s_(s) {}
    ~Tail() { b_->record_tail(s_); }
    Tail(const Tail&) = delete;
    Tail& operator=(const Tail&) = delete;

   private:
    CudaBackend* b_;
    cudaStream_t s_;
  };
  Tail use(void* stream) { return Tail(this, as_stream(stream)); }
  void record_tail(cudaStream_t s) noexcept {
    cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
    if (cudaStreamIsCapturing(s, &cs) != cudaSuccess) {
      cudaGetLastError();
      return;
    }
    // Work captured into a graph runs when the host launches it: the host
    // keeps the layer (and so its memory) alive until then, as with PyTorch.
    if (cs != cudaStreamCaptureStatusNone) return;
    std::lock_guard<std::mutex> lk(ev_mu_);
    cudaEvent_t& e = tails_[s];
    if (!e && !(e = new_event_locked())) return;
    if (cudaEventRecord(e, s) != cudaSuccess) cudaGetLastError();
  }

  CachingAllocator::Raw raw_allocator() {
    CachingAllocator::Raw r;
    r.alloc = [](size_t n) -> void* {
      void* p = nullptr;
      if (cudaMalloc(&p, n) != cudaSuccess) {
        cudaGetLastError();
        return nullptr;
      }
      return p;
    };
    r.free = [](void* p) { cudaFree(p); };
    // A freed block is reusable once every stream's library work queued so
    // far has finished: our stream waits on each tail event, then records the
    // fence. Tails already passed are dropped (their streams may be gone).
    r.fence = [this]() -> uint64_t {
      cudaEvent_t e = take_event();
      std::lock_guard<std::mutex> lk(ev_mu_);
      bool ok = true;
      for (auto it = tails_.begin(); it != tails_.end();) {
        if (cudaEventQuery(it->second) == cudaSuccess) {
          free_events_.push_back(it->second);
          it = tails_.erase(it);
          continue;
        }
        cudaGetLastError();
        ok = ok && cudaStreamWaitEvent(own_, it->second, 0) == cudaSuccess;
        ++it;
      }
      ok = ok && cudaEventRecord(e, own_) == cudaSuccess;
      if (!ok) {  // cannot order on the device: wait for the work here
        cudaGetLastError();
        for (auto& t : tails_) cudaEventSynchronize(t.second);
        cudaGetLastError();
      }
      return reinterpret_cast<uint64_t>(e);
    };
    r.fence_done = [](uint64_t f) {
      cudaError_t e = cudaEventQuery(reinterpret_cast<cudaEvent_t>(f));
      if (e == cudaErrorNotReady) return false;
      cudaGetLastError();
      return true;
    };
    r.fence_release = [this](uint64_t f) { give_event(reinterpret_cast<cudaEvent_t>(f)); };
    return r;
  }
  cudaEvent_t take_event() {
    std::lock_guard<std::mutex> lk(ev_mu_);
    if (!free_events_.empty()) {
      cudaEvent_t e = free_events_.back();
      free_events_.pop_back();
      return e;
    }
    cudaEvent_t e = new_event_locked();
    if (!e) fail(TPPP_ERR_CUDA, "cuda backend: cudaEventCreate failed");
    return e;
  }
  cudaEvent_t new_event_locked() noexcept {
    if (!free_events_.empty()) {
      cudaEvent_t e = free_events_.back();
      free_events_.pop_back();
      return e;
    }
    cudaEvent_t e = nullptr;
    if (cudaEventCreateWithFlags(&e, cudaEventDisableTiming) != cudaSuccess) {
      cudaGetLastError();
      return nullptr;
    }
    events_.push_back(e);
    return e;
  }
  void give_event(cudaEvent_t e) {
    std::lock_guard<std::mutex> lk(ev_mu_);
    free_events_.push_back(e);
  }

  // Column-major view: y^T[N, M] = W[N, K] (stored as K x N, op T) * x^T (K x M).
  std::shared_ptr<GemmPlan> make_plan(const GemmKey& k) {
    auto p = std::make_shared<GemmPlan>();
    const cublasComputeType_t ct = k.tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    check_cublas(cublasLtMatmulDescCreate(&p->desc, ct, CUDA_R_32F), "cublasLtMatmulDescCreate");
    const cublasOperation_t t = CUBLAS_OP_T, nn = CUBLAS_OP_N;
    check_cublas(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, &t, sizeof t), "cuBLASLt: transa");
    check_cublas(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, &nn, sizeof nn),
                 "cuBLASLt: transb");
    if (k.bias) {
      const cublasLtEpilogue_t ep = CUBLASLT_EPILOGUE_BIAS;
      check_cublas(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &ep, sizeof ep),
                   "cuBLASLt: bias epilogue");
    }
    const cudaDataType_t in = cuda_type(k.dtype), out = cuda_type(k.y_dtype);
    check_cublas(cublasLtMatrixLayoutCreate(&p->a, in, static_cast<uint64_t>(k.k), static_cast<uint64_t>(k.n), k.k),
                 "cuBLASLt: layout of W");
    check_cublas(cublasLtMatrixLayoutCreate(&p->b, in, static_cast<uint64_t>(k.k), static_cast<uint64_t>(k.m), k.k),
                 "cuBLASLt: layout of x");
    check_cublas(cublasLtMatrixLayoutCreate(&p->c, out, static_cast<uint64_t>(k.n), static_cast<uint64_t>(k.m), k.ldy),
                 "cuBLASLt: layout of y");
    cublasLtMatmulPreference_t pref = nullptr;
    check_cublas(cublasLtMatmulPreferenceCreate(&pref), "cublasLtMatmulPreferenceCreate");
    const uint64_t ws = kWorkspace;
    const uint32_t al = static_cast<uint32_t>(k.align);
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws);
    for (auto attr : {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                      CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES})
      cublasLtMatmulPreferenceSetAttribute(pref, attr, &al, sizeof al);
    cublasLtMatmulHeuristicResult_t res[kCandidates] = {};
    int found = 0;
    cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(lt_, p->desc, p->a, p->b, p->c, p->c, pref, kCandidates, res,
                                                       &found);
    cublasLtMatmulPreferenceDestroy(pref);
    if (st != CUBLAS_STATUS_SUCCESS || found == 0)
      fail(TPPP_ERR_CUDA, "cuBLASLt has no algorithm for y[%lld,%lld] = x[%lld,%lld] W^T (%s -> %s, align %d): status %d",
           static_cast<long long>(k.m), static_cast<long long>(k.n), static_cast<long long>(k.m),
           static_cast<long long>(k.k), dtype_name(k.dtype), dtype_name(k.y_dtype), k.align, static_cast<int>(st));
    p->algo = res[0].algo;
    for (int i = 0; i < found; i++) p->candidates.push_back(res[i].algo);
    return p;
  }

  void run(const GemmPlan& p, const cublasLtMatmulAlgo_t& algo, const void* x, const void* w, void* y, void* stream) {
    const float alpha = 1.0f, beta = 0.0f;
    check_cublas(cublasLtMatmul(lt_, p.desc, &alpha, w, p.a, x, p.b, &beta, y, p.c, y, p.c, &algo, ws_, kWorkspace,
                                as_stream(stream)),
                 "cublasLtMatmul");
  }

  // Times each heuristic candidate (3 runs each, after one warm-up) and keeps the fastest.
  void tune(GemmPlan& p, const void* x, const void* w, void* y, void* stream) {
    cudaEvent_t a = nullptr, b = nullptr;
    check_cuda(cudaEventCreate(&a), "cudaEventCreate");
    check_cuda(cudaEventCreate(&b), "cudaEventCreate");
    float best = 1e30f;
    cublasLtMatmulAlgo_t pick = p.algo;
    for (const cublasLtMatmulAlgo_t& algo : p.candidates) {
      bool ok = true;
      try {
        run(p, algo, x, w, y, stream);
        cudaEventRecord(a, as_stream(stream));
        for (int i = 0; i < 3; i++) run(p, algo, x, w, y, stream);
        cudaEventRecord(b, as_stream(stream));
        wait_event(b, timeout_ms_, "cuBLASLt autotune");
      } catch (const Error&) {
        ok = false;
      }
      float ms = 0;
      if (ok && cudaEventElapsedTime(&ms, a, b) == cudaSuccess && ms < best) {
        best = ms;
        pick = algo;
      }
    }
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    p.algo = pick;
    p.tuned = true;
  }

  static constexpr int kCandidates = 8;
  int dev_;
  int timeout_ms_;  // bound on each wait for the device
  // Fence events: declared before alloc_, which uses them until it is gone.
  std::mutex ev_mu_;
  std::vector<cudaEvent_t> events_, free_events_;
  CachingAllocator alloc_;
  bool tf32_, autotune_;
  cublasLtHandle_t lt_ = nullptr;
  void* ws_ = nullptr;         // [kWorkspace] bytes, device
  cudaStream_t own_ = nullptr;  // uploads at bind time
  std::unordered_map<cudaStream_t, cudaEvent_t> tails_;  // stream -> its latest library work (guarded by ev_mu_)
  std::unique_ptr<PlanCache<GemmPlan>> plans_{new PlanCache<GemmPlan>()};
  std::unique_ptr<CudaAttention> attn_{new CudaAttention(timeout_ms_)};
};

}  // namespace

std::unique_ptr<Backend> create_cuda_backend(int device, int timeout_ms) {
  return std::unique_ptr<Backend>(new CudaBackend(device, timeout_ms));
}

}  // namespace tppp
