// Gives the C heap's free pages back to the system (glibc's malloc_trim;
// nothing elsewhere). glibc keeps freed blocks below its mmap threshold,
// which grows to 32 MB once a large block is freed, so a loader's per-module
// buffers would stay resident beside the packed weights made from them.
#pragma once
#include <cstddef>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace tppp {

inline void trim_host_heap() {
#if defined(__GLIBC__)
  malloc_trim(0);
#endif
}

}  // namespace tppp
