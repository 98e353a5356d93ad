// safetensors header and index parsers. Pure: bytes in, index out, no I/O,
// so they are fuzzed (tests/fuzz) and every malformed input has a test file.
// Format: u64 little-endian header length N, N bytes of UTF-8 JSON (an
// object: name -> {dtype, shape, data_offsets: [begin, end]} relative to the
// data that follows, plus an optional "__metadata__" of strings), then the
// tensor bytes, packed with no gaps and nothing after the last tensor.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace tppp {

constexpr uint64_t kMaxSafetensorsHeader = 100ull << 20;  // as the reference implementation

struct StTensor {
  std::string name;
  std::string dtype_name;      // as in the file ("BF16")
  int32_t dtype = -1;          // TPPP_DTYPE_*, or -1 for a valid type we cannot load (F64, BOOL, ...)
  size_t esize = 0;            // bytes per element
  std::vector<int64_t> shape;
  uint64_t numel = 1;
  uint64_t begin = 0, end = 0; // byte offsets relative to the data section
};

struct StHeader {
  uint64_t header_len = 0;
  uint64_t data_offset = 0;    // 8 + header_len: where tensor bytes start in the file
  std::vector<StTensor> tensors;  // in data order
  std::map<std::string, std::string> metadata;
  const StTensor* find(const std::string& name) const;
};

// Bytes needed to parse: 8 + header length (validated against file_size).
// Throws FORMAT when the first bytes already say the file is bad.
uint64_t safetensors_header_bytes(const uint8_t* prefix, size_t n, uint64_t file_size, const std::string& file);

// `bytes` holds at least the first safetensors_header_bytes() bytes of a file
// of file_size bytes. Throws tppp::Error(FORMAT) naming the file and tensor.
StHeader parse_safetensors(const uint8_t* bytes, size_t n, uint64_t file_size, const std::string& file);

struct StIndex {
  std::map<std::string, std::string> weight_map;  // tensor -> shard file name
  std::vector<std::string> shards;                // distinct, sorted
};

// model.safetensors.index.json. Shard names must be plain relative names
// inside the checkpoint directory (no "..", no absolute path, no NUL).
StIndex parse_index(const char* bytes, size_t n, const std::string& file);

}  // namespace tppp
