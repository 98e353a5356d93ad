// FlashInfer's paged decode and FA2 prefill for head_dim 64, bf16 and f16
// (see flashinfer_impl.cuh).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "c_api.h"
#include "flashinfer_impl.cuh"

namespace tppp_kernels {
namespace fi {

cudaError_t plan_hd64(Plan* p, const Workspace& ws, const int32_t* qo, const int32_t* kv, bool decode, cudaStream_t s) {
  if (p->dtype == TPPP_DTYPE_BF16) return impl::plan<__nv_bfloat16, 64>(p, ws, qo, kv, decode, s);
  if (p->dtype == TPPP_DTYPE_F16) return impl::plan<__half, 64>(p, ws, qo, kv, decode, s);
  return cudaErrorInvalidValue;
}

cudaError_t run_hd64(const Plan& p, const Workspace& ws, const void* q, int64_t ldq, const void* kc, const void* vc,
                   const int32_t* qo, const int32_t* kvp, const int32_t* kvi, const int32_t* kvl, float scale,
                   void* out, cudaStream_t s) {
  if (p.dtype == TPPP_DTYPE_BF16)
    return impl::run<__nv_bfloat16, 64>(p, ws, q, ldq, kc, vc, qo, kvp, kvi, kvl, scale, out, s);
  if (p.dtype == TPPP_DTYPE_F16) return impl::run<__half, 64>(p, ws, q, ldq, kc, vc, qo, kvp, kvi, kvl, scale, out, s);
  return cudaErrorInvalidValue;
}

}  // namespace fi
}  // namespace tppp_kernels
