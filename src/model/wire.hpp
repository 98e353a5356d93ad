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

enum : int32_t { kCmdForward = 1, kCmdRemove = 2, kCmdGenerate = 3, kCmdStop = 4, kCmdSubmit = 5, kCmdSeqRm = 6, kCmdSeqCp = 7 };

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

// A batch (and its outputs flags) in a command: written by the driver, read
// back by a follower into owned arrays.
inline void write_batch(Writer* w, int32_t outputs, int32_t n, const int32_t* tok, const int32_t* pos,
                        const int32_t* seq, const int8_t* want) {
  w->i32(outputs);
  w->i32(n);
  w->i32(want ? 1 : 0);
  w->i32s(tok, static_cast<size_t>(n));
  w->i32s(pos, static_cast<size_t>(n));
  w->i32s(seq, static_cast<size_t>(n));
  if (want) w->put(want, static_cast<size_t>(n));
}
struct WireBatch {
  int32_t outputs = 0, n = 0;
  bool has_want = false;
  std::vector<int32_t> tok, pos, seq;
  std::vector<int8_t> want;
  void read(Reader* rd, int32_t max_batch) {
    outputs = rd->i32();
    n = rd->i32();
    has_want = rd->i32() != 0;
    if (n <= 0 || n > max_batch) fail(TPPP_ERR_FORMAT, "follow: a command with a batch of %d tokens", n);
    tok = rd->i32s(n);
    pos = rd->i32s(n);
    seq = rd->i32s(n);
    want.resize(has_want ? static_cast<size_t>(n) : 0);
    rd->get(want.data(), want.size());
  }
};

}  // namespace tppp
