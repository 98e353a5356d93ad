// dtype table and IEEE half conversions (software; F16C would need -mf16c,
// which a portable build cannot assume).
#include "core/dtype.hpp"

#include <climits>

#include "core/error.hpp"

#include <cmath>

namespace tppp {

size_t dtype_size(int32_t d) {
  switch (d) {
    case TPPP_DTYPE_F32: return 4;
    case TPPP_DTYPE_F16: return 2;
    case TPPP_DTYPE_BF16: return 2;
    case TPPP_DTYPE_F8E4M3: return 1;
    case TPPP_DTYPE_F8E5M2: return 1;
    case TPPP_DTYPE_I8: return 1;
    case TPPP_DTYPE_U8: return 1;
    case TPPP_DTYPE_I32: return 4;
    case TPPP_DTYPE_I64: return 8;
    default: return 0;
  }
}

const char* dtype_name(int32_t d) {
  static const char* names[] = {"F32", "F16", "BF16", "F8_E4M3", "F8_E5M2", "I8", "U8", "I32", "I64"};
  return dtype_valid(d) ? names[d] : "INVALID";
}

float f16_to_f32(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t man = h & 0x3ffu;
  uint32_t u;
  if (exp == 0) {
    if (man == 0) {
      u = sign;
    } else {  // subnormal: normalise
      int e = -1;
      do {
        e++;
        man <<= 1;
      } while ((man & 0x400u) == 0);
      u = sign | (static_cast<uint32_t>(127 - 15 - e) << 23) | ((man & 0x3ffu) << 13);
    }
  } else if (exp == 31) {
    u = sign | 0x7f800000u | (man << 13);
  } else {
    u = sign | ((exp + 127 - 15) << 23) | (man << 13);
  }
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

uint16_t f32_to_f16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u);  // NaN
  if (a >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // overflow -> Inf
  if (a < 0x38800000u) {  // subnormal or zero in f16
    // value = a as float; f16 subnormal unit is 2^-24.
    float v;
    std::memcpy(&v, &a, 4);
    float scaled = v * 16777216.0f;  // exact (power of two)
    uint32_t m = static_cast<uint32_t>(std::nearbyint(scaled));  // RNE under default rounding
    return static_cast<uint16_t>(sign | m);
  }
  uint32_t exp = ((a >> 23) - 127 + 15);
  uint32_t man = a & 0x7fffffu;
  uint32_t h = (exp << 10) | (man >> 13);
  uint32_t rem = man & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h++;  // carries into exp correctly
  return static_cast<uint16_t>(sign | h);
}

void convert_dtype(const void* src, int32_t sd, void* dst, int32_t dd, size_t n) {
  if (sd == dd) {
    std::memmove(dst, src, n * dtype_size(sd));
    return;
  }
  for (size_t i = 0; i < n; i++) store_float(dd, dst, i, load_float(sd, src, i));
}

std::string shape_string(const std::vector<int64_t>& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); i++) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

uint64_t check_tensor(const tppp_tensor& t, const char* op, const char* what) {
  if (t.ndim < 0 || t.ndim > TPPP_MAX_DIMS)
    fail(TPPP_ERR_INVALID_ARGUMENT, "%s: %s.ndim is %d: it must be 0..%d", op, what, t.ndim, TPPP_MAX_DIMS);
  if (!dtype_valid(t.dtype))
    fail(TPPP_ERR_INVALID_ARGUMENT, "%s: %s.dtype %d is not a TPPP_DTYPE_* value", op, what, t.dtype);
  if (t.mem_kind < TPPP_MEM_HOST || t.mem_kind > TPPP_MEM_CUDA)
    fail(TPPP_ERR_INVALID_ARGUMENT, "%s: %s.mem_kind %d is not a TPPP_MEM_* value", op, what, t.mem_kind);
  uint64_t n = dtype_size(t.dtype);
  for (int32_t d = 0; d < t.ndim; d++) {
    if (t.shape[d] < 0)
      fail(TPPP_ERR_INVALID_ARGUMENT, "%s: %s.shape[%d] is %lld: a dimension must be >= 0", op, what, d,
           static_cast<long long>(t.shape[d]));
    if (__builtin_mul_overflow(n, static_cast<uint64_t>(t.shape[d]), &n) || n > static_cast<uint64_t>(INT64_MAX))
      fail(TPPP_ERR_INVALID_ARGUMENT, "%s: %s of shape %s and dtype %s: the byte size overflows", op, what,
           shape_string(std::vector<int64_t>(t.shape, t.shape + t.ndim)).c_str(), dtype_name(t.dtype));
  }
  return n;
}

}  // namespace tppp
