// dtype facts (size, name) and scalar conversions for f16/bf16, shared by the
// host collectives and, later, the CPU backend. Conversions round to nearest
// even and keep NaN/Inf, like torch.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>

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

}  // namespace tppp
