// What the C++ benchmarks share: a status check that exits with the
// library's message, and a 2-D tensor view. (The C examples and benches keep
// their own few lines on purpose: each is a standalone file to read.)
#pragma once
#include <cstdio>
#include <cstdlib>

#include "c_api.h"

#define CHECK(call)                                                                            \
  do {                                                                                         \
    tppp_status s_ = (call);                                                                   \
    if (s_ != TPPP_OK) {                                                                       \
      std::fprintf(stderr, "%s: %s: %s\n", #call, tppp_status_string(s_), tppp_last_error()); \
      std::exit(1);                                                                            \
    }                                                                                          \
  } while (0)

// data[rows, cols] of dt, contiguous, in host memory unless told otherwise.
inline tppp_tensor tensor2d(void* data, int32_t dt, int64_t rows, int64_t cols, int32_t mem_kind = TPPP_MEM_HOST,
                            int32_t device = -1) {
  tppp_tensor t{};
  t.data = data;
  t.mem_kind = mem_kind;
  t.device = device;
  t.dtype = dt;
  t.ndim = 2;
  t.shape[0] = rows;
  t.shape[1] = cols;
  return t;
}
