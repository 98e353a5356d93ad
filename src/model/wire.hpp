// The driver's commands in follow mode on the wire (follow.cpp, steps.cpp):
// a header {op, bytes}, then the bytes, appended and read back as int32
// fields; a short or truncated command is FORMAT, never a read past it.
#pragma once
#include <cstdint>
#include <cstring>
#include <vector>

#include "c_api.h"
#include "core/error.hpp"

namespace tppp {

enum : int32_t { kCmdForward = 1, kCmdRemove = 2, kCmdGenerate = 3, kCmdStop = 4, kCmdSubmit = 5, kCmdSeqRm = 6 };

struct CmdHead {
  int32_t op;
  int32_t reserved;
  int64_t bytes;
};

// Appends and reads back int32 fields.
struct Writer {
  std::vector<char> b;
  void i32(int32_t v) { put(&v, 4); }
  void i32s(const int32_t* v, size_t n) { put(v, n * 4); }
  void put(const void* p, size_t n) {
    if (n == 0) return;
    const size_t at = b.size();
    b.resize(at + n);
    std::memcpy(b.data() + at, p, n);
  }
};
struct Reader {
  const std::vector<char>& b;
  size_t at = 0;
  int32_t i32() {
    int32_t v;
    get(&v, 4);
    return v;
  }
  std::vector<int32_t> i32s(int64_t n) {
    if (n < 0 || static_cast<uint64_t>(n) > (b.size() - at) / 4)
      fail(TPPP_ERR_FORMAT, "follow: a command from the driver is shorter than it says (%lld more values)",
           static_cast<long long>(n));
    std::vector<int32_t> v(static_cast<size_t>(n));
    get(v.data(), v.size() * 4);
    return v;
  }
  void get(void* p, size_t n) {
    if (n > b.size() - at) fail(TPPP_ERR_FORMAT, "follow: a command from the driver is truncated");
    if (n) std::memcpy(p, b.data() + at, n);
    at += n;
  }
};

}  // namespace tppp
