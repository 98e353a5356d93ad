// Parallel host-to-device upload through page-locked staging (the rank-wide
// weight load into GPU memory): `lanes` workers, each with its own copy
// stream and two staging buffers, take jobs in order from a shared counter;
// a worker fills one buffer (pread of the file slice, dtype conversion)
// while the copy of its other buffer runs, so reads on every lane overlap
// copies on every stream. Pure logic over an engine of callbacks (pinned
// allocation, async copy, fences), like the caching allocator: tests run it
// with a host engine; device_cuda.cpp supplies CUDA's.
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>

namespace tppp {

struct CopyEngine {
  std::function<void*(size_t)> alloc_staging;  // page-locked host memory; nullptr when out of memory
  std::function<void(void*)> free_staging;
  // Queues dst <- src (bytes) on lane's stream and returns a fence after it.
  std::function<uint64_t(int lane, void* dst, const void* src, size_t bytes)> copy;
  // Waits for a fence within the engine's deadline (throws TIMEOUT / CUDA), then releases it.
  std::function<void(uint64_t fence)> wait;
};

struct UploadJob {
  char* dst = nullptr;  // device address
  size_t bytes = 0;     // bytes the fill writes (and the copy moves)
};

// fill(i, staging) writes job i's bytes into staging (at most max_bytes of
// all jobs). Throws the first error of any lane after every lane has stopped
// and every copy in flight has finished (no copy reads a freed buffer);
// cancel is polled between jobs (ABORTED); done_bytes counts filled bytes.
void staged_upload(const CopyEngine& e, const UploadJob* jobs, size_t n, int lanes,
                   const std::function<void(size_t job, void* staging)>& fill, const std::atomic<int>* cancel,
                   std::atomic<uint64_t>* done_bytes);

}  // namespace tppp
