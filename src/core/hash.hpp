// FNV-1a, 64-bit: a cheap fingerprint of a few values (what a captured CUDA
// graph baked in), not for adversarial input; and SipHash-2-4 where it is.
#pragma once
#include <cstddef>
#include <cstdint>

namespace tppp {

class Fnv1a {
 public:
  void bytes(const void* p, size_t n) {
    const unsigned char* b = static_cast<const unsigned char*>(p);
    for (size_t i = 0; i < n; i++) h_ = (h_ ^ b[i]) * 1099511628211ull;
  }
  template <typename T>
  void value(const T& v) {
    bytes(&v, sizeof v);
  }
  uint64_t get() const { return h_; }

 private:
  uint64_t h_ = 1469598103934665603ull;
};

// SipHash-2-4 (Aumasson and Bernstein): a keyed 64-bit PRF. The bootstrap's
// hello proves the group secret with it without sending the secret.
inline uint64_t siphash24(uint64_t k0, uint64_t k1, const void* data, size_t n) {
  auto rotl = [](uint64_t x, int b) { return (x << b) | (x >> (64 - b)); };
  uint64_t v0 = 0x736f6d6570736575ull ^ k0, v1 = 0x646f72616e646f6dull ^ k1;
  uint64_t v2 = 0x6c7967656e657261ull ^ k0, v3 = 0x7465646279746573ull ^ k1;
  auto round = [&] {
    v0 += v1; v1 = rotl(v1, 13); v1 ^= v0; v0 = rotl(v0, 32);
    v2 += v3; v3 = rotl(v3, 16); v3 ^= v2;
    v0 += v3; v3 = rotl(v3, 21); v3 ^= v0;
    v2 += v1; v1 = rotl(v1, 17); v1 ^= v2; v2 = rotl(v2, 32);
  };
  const unsigned char* p = static_cast<const unsigned char*>(data);
  const size_t whole = n / 8 * 8;
  for (size_t i = 0; i < whole; i += 8) {
    uint64_t m = 0;
    for (int b = 0; b < 8; b++) m |= static_cast<uint64_t>(p[i + b]) << (8 * b);
    v3 ^= m;
    round();
    round();
    v0 ^= m;
  }
  uint64_t last = static_cast<uint64_t>(n & 0xff) << 56;
  for (size_t b = 0; b < n - whole; b++) last |= static_cast<uint64_t>(p[whole + b]) << (8 * b);
  v3 ^= last;
  round();
  round();
  v0 ^= last;
  v2 ^= 0xff;
  for (int i = 0; i < 4; i++) round();
  return v0 ^ v1 ^ v2 ^ v3;
}

}  // namespace tppp
