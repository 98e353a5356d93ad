// Caching allocator for the CUDA backend: no cudaMalloc on the forward path.
// Freed blocks go back to a pool keyed by (rounded) size and are handed out
// again; a freed block becomes reusable only once a fence recorded at free
// time has passed (the stream work that used it has finished), so a block is
// never recycled under a running kernel. Pure logic over four callbacks (raw
// alloc/free, fence record/query), so it is unit-tested without a GPU. Also
// the device transport's pool of pinned staging buffers (its copies are
// synchronous: fences that have always passed).
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace tppp {

class CachingAllocator {
 public:
  struct Raw {
    std::function<void*(size_t)> alloc;        // nullptr when out of memory
    std::function<void(void*)> free;
    std::function<uint64_t()> fence;           // record a fence after the work queued so far
    std::function<bool(uint64_t)> fence_done;  // has it passed?
    std::function<void(uint64_t)> fence_release;
  };
  struct Stats {
    size_t raw_allocs = 0;   // calls to Raw::alloc that succeeded
    size_t reuses = 0;       // allocations served from the pool
    size_t in_use_bytes = 0;
    size_t cached_bytes = 0;  // idle + pending
    size_t pending = 0;       // freed blocks whose fence has not passed
  };

  // what: the memory, for messages ("device memory", "pinned host memory").
  explicit CachingAllocator(Raw raw, const char* what = "device memory") : raw_(std::move(raw)), what_(what) {}
  ~CachingAllocator();
  CachingAllocator(const CachingAllocator&) = delete;
  CachingAllocator& operator=(const CachingAllocator&) = delete;

  // Throws OUT_OF_MEMORY (naming the size and what is held) when even a pool
  // flush does not make room.
  void* alloc(size_t bytes);
  // nullptr is ignored; a pointer this allocator did not hand out throws INVALID_ARGUMENT.
  void free(void* p);
  // Drops a handed-out block without freeing or reusing it (something may
  // still write into it: a leak on purpose). Unknown pointers are ignored.
  void forget(void* p);
  // Returns every idle block to Raw::free (pending ones stay pending).
  void release_cached();
  Stats stats() const;

  // Allocation granularity: 512 B up to 1 MiB, 2 MiB above.
  static size_t round_size(size_t bytes);

 private:
  struct Pending {
    void* p;
    size_t size;
    uint64_t fence;
  };
  void sweep_locked();  // pending blocks whose fence passed -> idle
  void release_locked();

  Raw raw_;
  const char* what_;
  mutable std::mutex mu_;
  std::unordered_map<void*, size_t> live_;  // handed out: pointer -> block size
  std::multimap<size_t, void*> idle_;       // size -> block
  std::vector<Pending> pending_;
  Stats st_;
};

}  // namespace tppp
