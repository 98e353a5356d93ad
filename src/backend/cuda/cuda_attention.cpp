// CudaAttention (see the header).
#include "backend/cuda/cuda_attention.hpp"

#include <cstring>

#include "c_api.h"
#include "core/dtype.hpp"
#include "core/error.hpp"
#include "core/hash.hpp"
#include "core/log.hpp"
#include "cuda/cuda_check.hpp"
#include "tppp_kernels.h"

namespace tppp {

namespace fi = tppp_kernels::fi;

CudaAttention::~CudaAttention() {
  if (staged_) cudaEventDestroy(staged_);
  if (ws_.float_buf) cudaFree(ws_.float_buf);
  if (ws_.int_buf) cudaFree(ws_.int_buf);
  if (ws_.pinned_int) cudaFreeHost(ws_.pinned_int);
  if (runs_dev_) cudaFree(runs_dev_);
  if (runs_host_) cudaFreeHost(runs_host_);
}

void CudaAttention::ensure_workspace() {
  if (ws_.float_buf) return;
  check_cuda(cudaMalloc(&ws_.float_buf, fi::kFloatWorkspace), "attention: cudaMalloc of FlashInfer's float workspace");
  ws_.float_bytes = fi::kFloatWorkspace;
  check_cuda(cudaMalloc(&ws_.int_buf, fi::kIntWorkspace), "attention: cudaMalloc of FlashInfer's int workspace");
  check_cuda(cudaMallocHost(&ws_.pinned_int, fi::kIntWorkspace), "attention: cudaMallocHost of the plan staging");
  ws_.int_bytes = fi::kIntWorkspace;
  check_cuda(cudaEventCreateWithFlags(&staged_, cudaEventDisableTiming), "attention: cudaEventCreate");
}

void CudaAttention::grow_runs(size_t cap) {
  if (runs_dev_) cudaFree(runs_dev_);
  if (runs_host_) cudaFreeHost(runs_host_);
  runs_dev_ = runs_host_ = nullptr;
  runs_cap_ = 0;
  void *dev = nullptr, *host = nullptr;
  check_cuda(cudaMalloc(&dev, cap * 4), "attention: cudaMalloc of the run arrays");
  runs_dev_ = static_cast<int32_t*>(dev);
  check_cuda(cudaMallocHost(&host, cap * 4), "attention: cudaMallocHost of the run arrays");
  runs_host_ = static_cast<int32_t*>(host);
  runs_cap_ = cap;
}

void CudaAttention::reserve(int64_t max_runs, int64_t max_pages) {
  const size_t cap = 3 * (static_cast<size_t>(max_runs) + 1) + static_cast<size_t>(max_pages);
  if (cap > runs_cap_) {
    wait_staging();
    grow_runs(cap);
  }
}

void CudaAttention::wait_staging() {
  if (!staged_pending_) return;
  wait_event(staged_, timeout_ms_, "attention: the previous batch's plan upload");
  staged_pending_ = false;
}

uint64_t CudaAttention::signature() const {
  Fnv1a h;  // what a launch bakes in: the plan and every buffer address
  h.value(plan_);
  h.value(runs_dev_);
  h.value(ws_.float_buf);
  h.value(ws_.int_buf);
  h.value(off_kvp_);
  h.value(off_kvl_);
  h.value(off_kvi_);
  return h.get();
}

void CudaAttention::plan(const AttnRuns& r, int64_t m, int64_t nh, int64_t kvh, int64_t d, int64_t page_size,
                         int32_t dtype, cudaStream_t s, bool for_graph) {
  plan_ = fi::Plan();
  if (!fi::supports(dtype, d) || r.runs() == 0 || r.qo_indptr.back() != m) return;
  ensure_workspace();
  wait_staging();  // both page-locked buffers are rewritten below
  const size_t R = static_cast<size_t>(r.runs()), need = 3 * (R + 1) + r.kv_indices.size();
  if (need > runs_cap_) {
    // Past the reserve (sequences sharing prefix pages list a page once per
    // run): kernels queued on s may still read the old arrays; wait for them
    // within the deadline, then grow. Graphs see the new address in
    // signature() and are captured again.
    if (runs_dev_) {
      TPPP_LOG(TPPP_LOG_INFO, "attention: a batch of %zu runs and %zu pages outgrows the run arrays (%zu entries); "
               "growing them", R, r.kv_indices.size(), runs_cap_);
      check_cuda(cudaEventRecord(staged_, s), "attention: cudaEventRecord");
      wait_event(staged_, timeout_ms_, "attention: the kernels reading the run arrays before they grow");
    }
    grow_runs(need * 2);
  }
  off_kvp_ = R + 1;
  off_kvl_ = 2 * (R + 1);
  off_kvi_ = 3 * (R + 1);
  std::memcpy(runs_host_, r.qo_indptr.data(), (R + 1) * 4);
  std::memcpy(runs_host_ + off_kvp_, r.kv_indptr.data(), (R + 1) * 4);
  std::memcpy(runs_host_ + off_kvl_, r.kv_last.data(), R * 4);
  std::memcpy(runs_host_ + off_kvi_, r.kv_indices.data(), r.kv_indices.size() * 4);
  check_cuda(cudaMemcpyAsync(runs_dev_, runs_host_, need * 4, cudaMemcpyHostToDevice, s),
             "attention: upload of the run arrays");
  const cudaError_t e = fi::plan(&plan_, ws_, r.qo_indptr.data(), r.kv_indptr.data(), r.runs(), static_cast<int32_t>(m),
                                 r.decode, nh, kvh, d, page_size, dtype, s, for_graph);
  check_cuda(cudaEventRecord(staged_, s), "attention: cudaEventRecord");
  staged_pending_ = true;
  if (e != cudaSuccess) {  // FlashInfer refused (a workspace too small for the batch): the generic kernel runs it
    cudaGetLastError();
    plan_ = fi::Plan();
    TPPP_LOG(TPPP_LOG_WARN, "attention: FlashInfer's plan for %d runs of %lld tokens (%lld heads, %lld kv heads, "
             "head_dim %lld, %s) failed (%s): using the generic kernel for this batch", r.runs(),
             static_cast<long long>(m), static_cast<long long>(nh), static_cast<long long>(kvh),
             static_cast<long long>(d), dtype_name(dtype), cudaGetErrorString(e));
  }
}

void CudaAttention::attention(const void* q, int64_t ldq, int64_t m, int64_t nh, int64_t kvh, int64_t d,
                              const void* k_cache, const void* v_cache, int64_t page_size, const int32_t* kv_len,
                              const int32_t* page_off, const int32_t* pages, float scale, void* out, int32_t dtype,
                              cudaStream_t s) {
  const fi::Plan& p = plan_;
  if (p.kind != 0 && p.rows == m && p.nh == nh && p.kvh == kvh && p.d == d && p.page_size == page_size &&
      p.dtype == dtype) {
    check_cuda(fi::run(p, ws_, q, ldq, k_cache, v_cache, runs_dev_, runs_dev_ + off_kvp_, runs_dev_ + off_kvi_,
                       runs_dev_ + off_kvl_, scale, out, s),
               p.kind == 1 ? "FlashInfer BatchDecodeWithPagedKVCache" : "FlashInfer BatchPrefillWithPagedKVCache");
    return;
  }
  check_cuda(tppp_kernels::attention(q, ldq, m, nh, kvh, d, k_cache, v_cache, page_size, kv_len, page_off, pages,
                                     scale, out, dtype, s),
             "kernel attention");
}

}  // namespace tppp
