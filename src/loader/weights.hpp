// Everything one rank owns from a checkpoint, loaded in one call: the slices
// chosen by the sharding rules, read in parallel (a pool over files and
// tensors, big tensors split), into one pre-touched arena the set owns or
// into buffers the host allocates. Progress is reported on the calling
// thread and can cancel.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "loader/checkpoint.hpp"

namespace tppp {

struct WeightEntry {
  std::string name;    // as the model asks for it ("lm_head.weight")
  std::string source;  // tensor read ("model.embed_tokens.weight" when tied)
  ShardRule rule = ShardRule::Replicated;
  std::vector<int64_t> shape;  // of the slice
  int32_t dtype = 0;
  void* data = nullptr;
  size_t bytes = 0;
};

struct LoadOptions {
  int32_t dtype = -1;   // -1: keep each tensor's file dtype
  int threads = 0;      // 0: min(8, hardware threads)
  // Host-owned buffers: called once per tensor before any read; NULL = fail.
  std::function<void*(size_t bytes, const std::string& name)> alloc;
  // Called on the calling thread with file bytes read so far; true cancels.
  std::function<bool(uint64_t done, uint64_t total)> progress;
  // A CUDA ordinal: one device allocation holds every tensor, filled by
  // parallel reads into page-locked staging and copies on `lanes` streams
  // (0: one per thread); alloc must then be empty.
  int device = -1;
  int lanes = 0;
  // Device loads: each group's tensors lie back to back in this order (a
  // merged module's parts, [q; k; v] or [gate; up], become one matrix the
  // layers use in place); groups first, then every other tensor, each
  // group and tensor 256-byte aligned. Names this rank does not own are
  // skipped.
  std::vector<std::vector<std::string>> groups;
  int timeout_ms = 60000;  // bound on each wait for a copy
};

class WeightSet {
 public:
  ~WeightSet();
  const std::vector<WeightEntry>& entries() const { return entries_; }
  int device() const { return device_; }  // -1: host memory
  const WeightEntry* find(const std::string& name) const;
  uint64_t read_bytes() const { return read_bytes_; }

  static std::unique_ptr<WeightSet> load(const Checkpoint& c, const GridSpec& g, const LoadOptions& o);

 private:
  static std::unique_ptr<WeightSet> load_device(std::unique_ptr<WeightSet> w, const Checkpoint& c,
                                                const std::vector<SliceSpec>& specs, const LoadOptions& o,
                                                int threads);
  std::vector<WeightEntry> entries_;
  void* arena_ = nullptr;  // library-owned storage (mmap), or NULL
  size_t arena_bytes_ = 0;
  int device_ = -1;
  void* dev_arena_ = nullptr;  // device memory (load into a CUDA device)
  uint64_t read_bytes_ = 0;
};

}  // namespace tppp
