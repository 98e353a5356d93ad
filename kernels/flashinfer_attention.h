// FlashInfer's paged attention (flashinfer-python's headers, pinned by
// scripts/fetch-flashinfer.sh) behind a plain C++ surface: nothing here
// includes a FlashInfer header, so the backend compiles without them. A
// batch is cut into runs (FlashInfer's "requests"): consecutive tokens of one
// sequence at consecutive positions, causal with the last query token
// aligned to the run's last KV position. Plan once per batch (host arrays,
// FlashInfer's own scheduler; its int workspace is copied from page-locked
// memory on the stream), then run once per layer.
// Built for bf16/f16 with head_dim 64 or 128 (kernels/flashinfer_*.cu, sm_90);
// the generic kernel of decoder.cu serves the rest.
#pragma once
#include <cuda_runtime_api.h>
#include <stddef.h>
#include <stdint.h>

namespace tppp_kernels {
namespace fi {

// Caller-owned workspaces (kernels never allocate): FlashInfer's float
// workspace (split-KV partial outputs, device), its int workspace (the plan's
// index arrays, device) and a page-locked host twin of the int workspace
// (the plan writes it, then copies it on the stream: the caller must not
// plan again before that copy has run).
struct Workspace {
  void* float_buf = nullptr;
  size_t float_bytes = 0;
  void* int_buf = nullptr;
  void* pinned_int = nullptr;
  size_t int_bytes = 0;
};
constexpr size_t kFloatWorkspace = size_t(128) << 20;  // FlashInfer's default
constexpr size_t kIntWorkspace = size_t(8) << 20;

// What a plan decided: the kernel and FlashInfer's plan info, plain data.
struct Plan {
  int32_t kind = 0;  // 0: none, 1: the decode kernel, 2: the FA2 prefill kernel
  int32_t runs = 0, rows = 0;
  int32_t nh = 0, kvh = 0, d = 0, page_size = 0, dtype = 0;
  int32_t ninfo = 0;  // entries of info in use
  int32_t cuda_graph = 0;
  int64_t info[16] = {};
};

// Is (dtype, head_dim) instantiated (FlashInfer built in and the shape one
// of ours)?
bool supports(int32_t dtype, int64_t head_dim);
// Does the decode kernel take this GQA group (FlashInfer's list: 1, 2, 3, 4,
// 6, 8, 16)? Other groups decode with the prefill kernel, as SGLang does.
bool decode_group_ok(int64_t group);

// qo_indptr_h [runs + 1] (token offsets), kv_indptr_h [runs + 1] (page
// offsets), host. decode: every run is one token (the CUDA-core decode
// kernel when the group allows, else the prefill kernel).
// cuda_graph: FlashInfer's CUDA-graph mode (padded, fixed grids; unused
// blocks masked), for launches captured once and replayed after later plans.
cudaError_t plan(Plan* p, const Workspace& ws, const int32_t* qo_indptr_h, const int32_t* kv_indptr_h, int32_t runs,
                 int32_t rows, bool decode, int64_t nh, int64_t kvh, int64_t d, int64_t page_size, int32_t dtype,
                 cudaStream_t s, bool cuda_graph = false);

// out[rows, nh * d] = causal attention of q (row stride ldq elements, heads
// at stride d) over the NHD caches [pages, page_size, kvh, d]; qo_indptr,
// kv_indptr, kv_indices (pages of each run in order) and kv_last (tokens in
// each run's last page) in device memory.
cudaError_t run(const Plan& p, const Workspace& ws, const void* q, int64_t ldq, const void* k_cache,
                const void* v_cache, const int32_t* qo_indptr, const int32_t* kv_indptr, const int32_t* kv_indices,
                const int32_t* kv_last, float scale, void* out, cudaStream_t s);

}  // namespace fi
}  // namespace tppp_kernels
