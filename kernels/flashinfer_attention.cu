// Dispatch of kernels/flashinfer_attention.h by head_dim to the instantiating
// files (flashinfer_hd64.cu, flashinfer_hd128.cu). Without FlashInfer's
// headers (TPPP_HAVE_FLASHINFER unset) nothing is supported and the backend
// uses decoder.cu's generic attention.
#include "c_api.h"
#include "flashinfer_attention.h"

namespace tppp_kernels {
namespace fi {

#ifdef TPPP_HAVE_FLASHINFER
cudaError_t plan_hd64(Plan*, const Workspace&, const int32_t*, const int32_t*, bool, cudaStream_t);
cudaError_t plan_hd128(Plan*, const Workspace&, const int32_t*, const int32_t*, bool, cudaStream_t);
cudaError_t run_hd64(const Plan&, const Workspace&, const void*, int64_t, const void*, const void*, const int32_t*,
                     const int32_t*, const int32_t*, const int32_t*, float, void*, cudaStream_t);
cudaError_t run_hd128(const Plan&, const Workspace&, const void*, int64_t, const void*, const void*, const int32_t*,
                      const int32_t*, const int32_t*, const int32_t*, float, void*, cudaStream_t);

bool supports(int32_t dtype, int64_t d) {
  return (dtype == TPPP_DTYPE_BF16 || dtype == TPPP_DTYPE_F16) && (d == 64 || d == 128);
}
#else
bool supports(int32_t, int64_t) { return false; }
#endif

bool decode_group_ok(int64_t g) { return g == 1 || g == 2 || g == 3 || g == 4 || g == 6 || g == 8 || g == 16; }

cudaError_t plan(Plan* p, const Workspace& ws, const int32_t* qo_indptr_h, const int32_t* kv_indptr_h, int32_t runs,
                 int32_t rows, bool decode, int64_t nh, int64_t kvh, int64_t d, int64_t page_size, int32_t dtype,
                 cudaStream_t s, bool cuda_graph) {
  *p = Plan();
  if (!supports(dtype, d) || runs <= 0 || rows <= 0 || kvh <= 0 || nh % kvh != 0 || page_size <= 0)
    return cudaErrorInvalidValue;
  p->runs = runs;
  p->rows = rows;
  p->nh = static_cast<int32_t>(nh);
  p->kvh = static_cast<int32_t>(kvh);
  p->d = static_cast<int32_t>(d);
  p->page_size = static_cast<int32_t>(page_size);
  p->dtype = dtype;
  p->cuda_graph = cuda_graph ? 1 : 0;
#ifdef TPPP_HAVE_FLASHINFER
  cudaError_t e = d == 64 ? plan_hd64(p, ws, qo_indptr_h, kv_indptr_h, decode, s)
                          : plan_hd128(p, ws, qo_indptr_h, kv_indptr_h, decode, s);
  if (e != cudaSuccess) p->kind = 0;
  return e;
#else
  (void)ws, (void)qo_indptr_h, (void)kv_indptr_h, (void)decode, (void)s, (void)cuda_graph;
  return cudaErrorInvalidValue;
#endif
}

cudaError_t run(const Plan& p, const Workspace& ws, const void* q, int64_t ldq, const void* k_cache,
                const void* v_cache, const int32_t* qo_indptr, const int32_t* kv_indptr, const int32_t* kv_indices,
                const int32_t* kv_last, float scale, void* out, cudaStream_t s) {
#ifdef TPPP_HAVE_FLASHINFER
  if (p.kind == 0) return cudaErrorInvalidValue;
  return p.d == 64 ? run_hd64(p, ws, q, ldq, k_cache, v_cache, qo_indptr, kv_indptr, kv_indices, kv_last, scale, out, s)
                   : run_hd128(p, ws, q, ldq, k_cache, v_cache, qo_indptr, kv_indptr, kv_indices, kv_last, scale, out,
                               s);
#else
  (void)p, (void)ws, (void)q, (void)ldq, (void)k_cache, (void)v_cache, (void)qo_indptr, (void)kv_indptr,
      (void)kv_indices, (void)kv_last, (void)scale, (void)out, (void)s;
  return cudaErrorInvalidValue;
#endif
}

}  // namespace fi
}  // namespace tppp_kernels
