// FNV-1a, 64-bit: a cheap fingerprint of a few values (what a captured CUDA
// graph baked in), not for adversarial input.
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

}  // namespace tppp
