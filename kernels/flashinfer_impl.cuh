// The FlashInfer calls behind kernels/flashinfer_attention.h, as templates
// over (dtype, head_dim); flashinfer_hd64.cu and flashinfer_hd128.cu
// instantiate them (one file per head_dim so the two compile in parallel).
// Parameters follow FlashInfer's own bindings (csrc/batch_decode.cu,
// csrc/batch_prefill_paged.cuh of flashinfer-python 0.7.2.post1): its
// scheduler plans into the workspaces, its Params structs from
// default_{decode,prefill}_params.cuh, DefaultAttention without masks
// beyond causal, no fused RoPE (the model ropes before writing the cache).
#pragma once
#include <flashinfer/attention/decode.cuh>
#include <flashinfer/attention/default_decode_params.cuh>
#include <flashinfer/attention/default_prefill_params.cuh>
#include <flashinfer/attention/prefill.cuh>
#include <flashinfer/attention/scheduler.cuh>
#include <flashinfer/attention/variants.cuh>

#include <exception>
#include <vector>

#include "flashinfer_attention.h"

namespace tppp_kernels {
namespace fi {
namespace impl {

using flashinfer::PosEncodingMode;
using Variant = flashinfer::DefaultAttention</*custom_mask=*/false, /*sliding_window=*/false, /*soft_cap=*/false,
                                             /*alibi=*/false>;
template <typename T>
using DecodeParams = flashinfer::BatchDecodeParams<T, T, T, int32_t>;
template <typename T>
using PrefillParams = flashinfer::BatchPrefillPagedParams<T, T, T, int32_t>;

template <typename T>
flashinfer::paged_kv_t<T, int32_t> paged(const Plan& p, const void* k_cache, const void* v_cache,
                                         const int32_t* kv_indptr, const int32_t* kv_indices,
                                         const int32_t* kv_last) {
  return flashinfer::paged_kv_t<T, int32_t>(
      static_cast<uint32_t>(p.kvh), static_cast<uint32_t>(p.page_size), static_cast<uint32_t>(p.d),
      static_cast<uint32_t>(p.runs), flashinfer::QKVLayout::kNHD, static_cast<T*>(const_cast<void*>(k_cache)),
      static_cast<T*>(const_cast<void*>(v_cache)), const_cast<int32_t*>(kv_indices), const_cast<int32_t*>(kv_indptr),
      const_cast<int32_t*>(kv_last));
}

template <typename T, uint32_t D>
cudaError_t plan(Plan* p, const Workspace& ws, const int32_t* qo_indptr_h, const int32_t* kv_indptr_h, bool decode,
                 cudaStream_t s) {
  // FlashInfer's planners take mutable host arrays (they read them only).
  std::vector<int32_t> qo(qo_indptr_h, qo_indptr_h + p->runs + 1), kv(kv_indptr_h, kv_indptr_h + p->runs + 1);
  const uint32_t nh = static_cast<uint32_t>(p->nh), kvh = static_cast<uint32_t>(p->kvh);
  try {
    if (decode && decode_group_ok(p->nh / p->kvh)) {
      flashinfer::DecodePlanInfo info;
      cudaError_t e = cudaSuccess;
      DISPATCH_GQA_GROUP_SIZE(nh / kvh, GROUP, {
        auto est = flashinfer::BatchDecodeWithPagedKVCacheWorkEstimationDispatched<GROUP, D, PosEncodingMode::kNone,
                                                                                   Variant, DecodeParams<T>>;
        e = flashinfer::DecodePlan<D, PosEncodingMode::kNone, Variant, DecodeParams<T>>(
            ws.float_buf, ws.float_bytes, ws.int_buf, ws.pinned_int, ws.int_bytes, info, kv.data(),
            static_cast<uint32_t>(p->runs), nh, static_cast<uint32_t>(p->page_size), p->cuda_graph != 0, s, est);
      });
      if (e != cudaSuccess) return e;
      const std::vector<int64_t> v = info.ToVector();
      if (v.size() > 16) return cudaErrorInvalidValue;
      for (size_t i = 0; i < v.size(); i++) p->info[i] = v[i];
      p->ninfo = static_cast<int32_t>(v.size());
      p->kind = 1;
      return cudaSuccess;
    }
    flashinfer::PrefillPlanInfo info;
    cudaError_t e = flashinfer::PrefillPlan<int32_t>(
        ws.float_buf, ws.float_bytes, ws.int_buf, ws.pinned_int, ws.int_bytes, info, qo.data(), kv.data(),
        static_cast<uint32_t>(p->rows), static_cast<uint32_t>(p->runs), nh, kvh, D, D,
        static_cast<uint32_t>(p->page_size), p->cuda_graph != 0, sizeof(T), /*window_left=*/-1,
        /*fixed_split_size=*/-1, /*disable_split_kv=*/false, /*colocated=*/0, /*uniform_q_len=*/decode ? 1 : -1, s,
        sizeof(T));
    if (e != cudaSuccess) return e;
    const std::vector<int64_t> v = info.ToVector();
    if (v.size() > 16) return cudaErrorInvalidValue;
    for (size_t i = 0; i < v.size(); i++) p->info[i] = v[i];
    p->ninfo = static_cast<int32_t>(v.size());
    p->kind = 2;
    return cudaSuccess;
  } catch (const std::exception&) {  // FlashInfer reports a refusal by throwing
    return cudaErrorInvalidValue;
  }
}

// What the decode and prefill Params share: q, the cache, o, strides, the
// scale (no window, no fused RoPE), and the plan's common index arrays.
template <typename T, typename Prm, typename Info>
void common(Prm* prm, const Plan& p, const Workspace& ws, const Info& info, const void* q, int64_t ldq,
            const void* k_cache, const void* v_cache, const int32_t* kv_indptr, const int32_t* kv_indices,
            const int32_t* kv_last, float scale, void* out) {
  using flashinfer::GetPtrFromBaseOffset;
  prm->q = static_cast<T*>(const_cast<void*>(q));
  prm->paged_kv = paged<T>(p, k_cache, v_cache, kv_indptr, kv_indices, kv_last);
  prm->o = static_cast<T*>(out);
  prm->lse = nullptr;
  prm->num_qo_heads = static_cast<uint32_t>(p.nh);
  prm->q_stride_n = static_cast<int32_t>(ldq);
  prm->q_stride_h = static_cast<int32_t>(p.d);
  prm->window_left = -1;
  prm->sm_scale = scale;
  prm->rope_rcp_scale = 1.0f;
  prm->rope_rcp_theta = 1.0f;
  prm->request_indices = GetPtrFromBaseOffset<int32_t>(ws.int_buf, info.request_indices_offset);
  prm->kv_tile_indices = GetPtrFromBaseOffset<int32_t>(ws.int_buf, info.kv_tile_indices_offset);
  prm->o_indptr = GetPtrFromBaseOffset<int32_t>(ws.int_buf, info.o_indptr_offset);
  prm->kv_chunk_size_ptr = GetPtrFromBaseOffset<int32_t>(ws.int_buf, info.kv_chunk_size_ptr_offset);
  prm->padded_batch_size = static_cast<uint32_t>(info.padded_batch_size);
}

template <typename T, uint32_t D>
cudaError_t run(const Plan& p, const Workspace& ws, const void* q, int64_t ldq, const void* k_cache,
                const void* v_cache, const int32_t* qo_indptr, const int32_t* kv_indptr, const int32_t* kv_indices,
                const int32_t* kv_last, float scale, void* out, cudaStream_t s) {
  using flashinfer::GetPtrFromBaseOffset;
  try {
    if (p.kind == 1) {
      flashinfer::DecodePlanInfo info;
      info.FromVector(std::vector<int64_t>(p.info, p.info + p.ninfo));
      DecodeParams<T> prm;
      common<T>(&prm, p, ws, info, q, ldq, k_cache, v_cache, kv_indptr, kv_indices, kv_last, scale, out);
      T* tmp_v = nullptr;
      float* tmp_s = nullptr;
      if (info.split_kv) {
        tmp_v = GetPtrFromBaseOffset<T>(ws.float_buf, info.v_offset);
        tmp_s = GetPtrFromBaseOffset<float>(ws.float_buf, info.s_offset);
        if (info.enable_cuda_graph)
          prm.block_valid_mask = GetPtrFromBaseOffset<bool>(ws.int_buf, info.block_valid_mask_offset);
      }
      return flashinfer::BatchDecodeWithPagedKVCacheDispatched<D, PosEncodingMode::kNone, Variant>(
          prm, tmp_v, tmp_s, /*enable_pdl=*/false, s);
    }
    if (p.kind != 2) return cudaErrorInvalidValue;
    flashinfer::PrefillPlanInfo info;
    info.FromVector(std::vector<int64_t>(p.info, p.info + p.ninfo));
    PrefillParams<T> prm;
    common<T>(&prm, p, ws, info, q, ldq, k_cache, v_cache, kv_indptr, kv_indices, kv_last, scale, out);
    prm.q_indptr = const_cast<int32_t*>(qo_indptr);
    prm.group_size = flashinfer::uint_fastdiv(static_cast<uint32_t>(p.nh / p.kvh));
    prm.qo_tile_indices = GetPtrFromBaseOffset<int32_t>(ws.int_buf, info.qo_tile_indices_offset);
    T* tmp_v = nullptr;
    float* tmp_s = nullptr;
    if (info.split_kv) {
      prm.merge_indptr = GetPtrFromBaseOffset<int32_t>(ws.int_buf, info.merge_indptr_offset);
      tmp_v = GetPtrFromBaseOffset<T>(ws.float_buf, info.v_offset);
      tmp_s = GetPtrFromBaseOffset<float>(ws.float_buf, info.s_offset);
    }
    prm.max_total_num_rows = static_cast<uint32_t>(info.total_num_rows);
    if (info.enable_cuda_graph) {
      prm.block_valid_mask = GetPtrFromBaseOffset<bool>(ws.int_buf, info.block_valid_mask_offset);
      prm.total_num_rows = GetPtrFromBaseOffset<uint32_t>(ws.int_buf, info.total_num_rows_offset);
    }
    cudaError_t e = cudaErrorInvalidValue;
    DISPATCH_CTA_TILE_Q(info.cta_tile_q, CTA_TILE_Q, {
      e = flashinfer::BatchPrefillWithPagedKVCacheDispatched</*SAME_KV_STRIDES=*/true, CTA_TILE_Q, D, D,
                                                             PosEncodingMode::kNone, /*fp16_qk_reduction=*/false,
                                                             flashinfer::MaskMode::kCausal, Variant>(
          prm, tmp_v, tmp_s, /*enable_pdl=*/false, s);
    });
    return e;
  } catch (const std::exception&) {
    return cudaErrorInvalidValue;
  }
}

}  // namespace impl
}  // namespace fi
}  // namespace tppp_kernels
