// dtype facts (size, name) and scalar conversions for f16/bf16, shared by the
// host collectives and, later, the CPU backend. Conversions round to nearest
// even and keep NaN/Inf, like torch.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "c_api.h"

namespace tppp {

inline bool dtype_valid(int32_t d) { return d >= TPPP_DTYPE_F32 && d <= TPPP_DTYPE_I64; }
size_t dtype_size(int32_t d);  // 0 for an invalid dtype
const char* dtype_name(int32_t d);

inline float bf16_to_f32(uint16_t h) {
  uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline uint16_t f32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);

inline bool dtype_is_float(int32_t d) { return d == TPPP_DTYPE_F32 || d == TPPP_DTYPE_F16 || d == TPPP_DTYPE_BF16; }

// Element i of a float-dtype (F32/F16/BF16) buffer, as f32, and back.
inline float load_float(int32_t dt, const void* p, size_t i) {
  switch (dt) {
    case TPPP_DTYPE_F32: return static_cast<const float*>(p)[i];
    case TPPP_DTYPE_F16: return f16_to_f32(static_cast<const uint16_t*>(p)[i]);
    default: return bf16_to_f32(static_cast<const uint16_t*>(p)[i]);
  }
}
inline void store_float(int32_t dt, void* p, size_t i, float v) {
  switch (dt) {
    case TPPP_DTYPE_F32: static_cast<float*>(p)[i] = v; break;
    case TPPP_DTYPE_F16: static_cast<uint16_t*>(p)[i] = f32_to_f16(v); break;
    default: static_cast<uint16_t*>(p)[i] = f32_to_bf16(v); break;
  }
}
// v rounded to dt's precision (what a store and a load give).
inline float round_to(int32_t dt, float v) {
  switch (dt) {
    case TPPP_DTYPE_F32: return v;
    case TPPP_DTYPE_F16: return f16_to_f32(f32_to_f16(v));
    default: return bf16_to_f32(f32_to_bf16(v));
  }
}

// n elements between float dtypes (any pair), or a plain copy when equal
// (any dtype). src and dst may be the same buffer only when the dtypes match.
void convert_dtype(const void* src, int32_t src_dtype, void* dst, int32_t dst_dtype, size_t n);

// "[2, 3, 4]"
std::string shape_string(const std::vector<int64_t>& shape);

// A host-given tensor descriptor is well formed: ndim in 0..TPPP_MAX_DIMS,
// every shape entry >= 0, a valid dtype and memory kind, and a byte size
// (elements x dtype size) that fits in int64. Returns the byte size; throws
// INVALID_ARGUMENT naming `op`, `what` and the field ("tppp_layer_forward:
// x.shape[0] is -5") so no negative or wrapped size reaches an allocator.
uint64_t check_tensor(const tppp_tensor& t, const char* op, const char* what);

}  // namespace tppp
