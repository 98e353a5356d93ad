// The CPU backend's decoder ops (RMSNorm, RoPE, paged KV, attention) as free
// functions over host memory; CpuBackend forwards to them (attention in
// attention.cpp, on the backend's pool). Semantics are the
// Backend interface's (backend/backend.hpp). f32 arithmetic throughout.
#pragma once
#include <cstdint>

namespace tppp {
namespace cpu {

void rms_norm(const void* x, void* residual, const void* w, void* out, int64_t m, int64_t h, float eps, int32_t dt);
void head_rms_norm(void* x, int64_t m, int64_t n, int64_t d, int64_t ld, const void* w, float eps, int32_t dt);
void rope(void* x, int64_t m, int64_t n, int64_t d, int64_t ld, const int32_t* pos, const float* inv_freq, int32_t dt);
void kv_write(const void* k, const void* v, int64_t ld, int64_t m, int64_t kvh, int64_t d, const int32_t* slot,
              void* k_cache, void* v_cache, int32_t dt);
void attention(const void* q, int64_t ldq, int64_t m, int64_t nh, int64_t kvh, int64_t d, const void* k_cache,
               const void* v_cache, int64_t page_size, const int32_t* kv_len, const int32_t* page_off,
               const int32_t* pages, float scale, void* out, int32_t dt);

}  // namespace cpu
}  // namespace tppp
