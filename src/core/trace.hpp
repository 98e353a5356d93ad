// NVTX ranges that name stages, micro-batches and layers in nsys timelines
// (header-only nvtx3 from the CUDA toolkit; with no tool attached a range
// costs a branch). Builds without CUDA compile them away.
#pragma once
#ifdef TPPP_HAVE_CUDA
#include <nvtx3/nvToolsExt.h>
#endif
#include <cstdarg>
#include <cstdio>

namespace tppp {

class TraceRange {
 public:
  explicit TraceRange(const char* fmt, ...) __attribute__((format(printf, 2, 3))) {
#ifdef TPPP_HAVE_CUDA
    char buf[96];
    va_list ap;
    va_start(ap, fmt);
    std::vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    nvtxRangePushA(buf);
#else
    (void)fmt;
#endif
  }
  ~TraceRange() {
#ifdef TPPP_HAVE_CUDA
    nvtxRangePop();
#endif
  }
  TraceRange(const TraceRange&) = delete;
  TraceRange& operator=(const TraceRange&) = delete;
};

}  // namespace tppp
