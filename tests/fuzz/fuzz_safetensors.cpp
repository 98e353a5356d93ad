// libFuzzer target: the safetensors header parser on arbitrary file bytes.
// Any input must give a header or a tppp::Error, never a crash, leak or
// out-of-bounds read (built with ASan + UBSan by scripts/fuzz.sh).
#include <cstdint>

#include "core/error.hpp"
#include "loader/safetensors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    tppp::StHeader h = tppp::parse_safetensors(data, size, size, "fuzz.safetensors");
    // Invariants of an accepted header.
    uint64_t pos = 0;
    for (const auto& t : h.tensors) {
      if (t.begin != pos || t.end < t.begin || h.data_offset + t.end > size) __builtin_trap();
      pos = t.end;
    }
    if (h.data_offset + pos != size) __builtin_trap();
  } catch (const tppp::Error&) {
  }
  return 0;
}
