// The CUDA backend's attention over the paged KV cache: FlashInfer's paged
// decode and FA2 prefill kernels (kernels/flashinfer_attention.h) where they
// are built for the shape (bf16/f16, head_dim 64 or 128), planned once per
// batch from its runs; decoder.cu's generic kernel otherwise (f32, other head
// dims, or a build without FlashInfer's headers). Owns FlashInfer's
// workspaces and the runs' device arrays.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

#include "backend/backend.hpp"
#include "flashinfer_attention.h"

namespace tppp {

class CudaAttention {
 public:
  explicit CudaAttention(int timeout_ms) : timeout_ms_(timeout_ms) {}
  ~CudaAttention();  // the owner has synchronized the device
  CudaAttention(const CudaAttention&) = delete;
  CudaAttention& operator=(const CudaAttention&) = delete;

  // Plans FlashInfer for the batch when it serves the shape; else forgets
  // any earlier plan (attention then takes the generic kernel).
  // for_graph: FlashInfer's CUDA-graph mode (fixed grids, so a captured
  // launch stays valid for later plans of the same shape).
  void plan(const AttnRuns& runs, int64_t m, int64_t nh, int64_t kvh, int64_t d, int64_t page_size, int32_t dtype,
            cudaStream_t s, bool for_graph = false);
  // Sizes the run arrays once for batches of up to max_runs runs listing
  // max_pages pages in all, so their address stays put (graphs) and plan()
  // never waits to grow them. Called before any batch runs.
  void reserve(int64_t max_runs, int64_t max_pages);
  // Changes whenever a launch would differ (plan, buffers): graphs compare it.
  uint64_t signature() const;
  void attention(const void* q, int64_t ldq, int64_t m, int64_t nh, int64_t kvh, int64_t d, const void* k_cache,
                 const void* v_cache, int64_t page_size, const int32_t* kv_len, const int32_t* page_off,
                 const int32_t* pages, float scale, void* out, int32_t dtype, cudaStream_t s);
  bool planned() const { return plan_.kind != 0; }  // tests: did the last plan pick FlashInfer?

 private:
  void ensure_workspace();
  void wait_staging();  // the previous plan's host-to-device copies have run
  void grow_runs(size_t cap);  // frees and reallocates (nothing in flight reads them)

  int timeout_ms_;
  tppp_kernels::fi::Workspace ws_;
  tppp_kernels::fi::Plan plan_;
  int32_t* runs_dev_ = nullptr;   // [qo_indptr | kv_indptr | kv_last | kv_indices], device
  int32_t* runs_host_ = nullptr;  // its page-locked staging twin
  size_t runs_cap_ = 0;           // elements of each
  size_t off_kvp_ = 0, off_kvl_ = 0, off_kvi_ = 0;
  cudaEvent_t staged_ = nullptr;  // recorded after the last plan's copies
  bool staged_pending_ = false;
};

}  // namespace tppp
