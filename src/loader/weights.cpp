// Rank-wide loading: plan every slice, allocate once, read in parallel.
#include "loader/weights.hpp"
#include "loader/hf_names.hpp"

#include <sys/mman.h>

#include <algorithm>
#include <chrono>
#include <future>
#include <thread>
#include <unordered_map>

#include "c_api.h"
#include "core/dtype.hpp"
#include "core/error.hpp"
#include "cuda/device.hpp"

namespace tppp {

WeightSet::~WeightSet() {
  if (arena_) ::munmap(arena_, arena_bytes_);
  if (dev_arena_) device_free(device_, dev_arena_);
}

namespace {

// Runs `work(cancel, done)` on a helper thread while the calling thread
// reports progress (the host's callback runs on the thread that called).
void with_progress(const LoadOptions& o, uint64_t total,
                   const std::function<void(const std::atomic<int>*, std::atomic<uint64_t>*)>& work) {
  std::atomic<int> cancel{0};
  std::atomic<uint64_t> done{0};
  if (!o.progress) {
    work(nullptr, &done);
    return;
  }
  auto fut = std::async(std::launch::async, [&] { work(&cancel, &done); });
  bool cancelled = false;
  while (fut.wait_for(std::chrono::milliseconds(20)) != std::future_status::ready) {
    if (!cancelled && o.progress(done.load(), total)) {
      cancelled = true;
      cancel.store(1);
    }
  }
  fut.get();  // rethrows a read error, or ABORTED after a cancel
  if (cancelled) fail(TPPP_ERR_ABORTED, "loading was cancelled by the progress callback");
  if (o.progress(done.load(), total)) fail(TPPP_ERR_ABORTED, "loading was cancelled by the progress callback");
}

}  // namespace

const WeightEntry* WeightSet::find(const std::string& name) const {
  for (const auto& e : entries_)
    if (e.name == name) return &e;
  return nullptr;
}

std::unique_ptr<WeightSet> WeightSet::load(const Checkpoint& c, const GridSpec& g, const LoadOptions& o) {
  c.validate_grid(g);  // every rule checked before any allocation
  std::unique_ptr<WeightSet> w(new WeightSet());
  std::vector<std::string> names;
  for (const auto& r : c.tensors()) names.push_back(r.t->name);
  for (const std::string& n : tied_names(c.config()))
    if (!c.find(n) && c.find(tied_source(n, c.config()))) names.push_back(n);
  std::vector<SliceSpec> specs;
  for (const std::string& n : names) {
    ShardDecision d = c.decide(n, g);
    if (d.rule == ShardRule::OtherStage) continue;
    const StTensor& t = *c.get(d.source).t;
    if (t.dtype < 0)
      fail(TPPP_ERR_NOT_SUPPORTED, "tensor '%s': dtype %s cannot be loaded", n.c_str(), t.dtype_name.c_str());
    WeightEntry e;
    e.name = n;
    e.source = d.source;
    e.rule = d.rule;
    e.dtype = o.dtype >= 0 ? o.dtype : t.dtype;
    SlicePlan p = plan_slice(t.shape, t.esize, d.spec, n);
    e.shape = p.out_shape;
    e.bytes = static_cast<size_t>(p.out_bytes / t.esize * dtype_size(e.dtype));
    w->read_bytes_ += p.read_bytes;
    w->entries_.push_back(e);
    specs.push_back(d.spec);
  }
  const int threads = o.threads > 0 ? o.threads : std::min(8, static_cast<int>(std::thread::hardware_concurrency()));
  if (o.device >= 0) return load_device(std::move(w), c, specs, o, threads);
  // Storage: the host's buffers, or one pre-touched, 64-byte-aligned arena.
  if (o.alloc) {
    for (auto& e : w->entries_) {
      e.data = o.alloc(e.bytes, e.name);
      if (!e.data && e.bytes)
        fail(TPPP_ERR_OUT_OF_MEMORY, "the host allocator returned NULL for '%s' (%zu bytes)", e.name.c_str(),
             e.bytes);
    }
  } else {
    size_t total = 0;
    for (const auto& e : w->entries_) total += (e.bytes + 63) / 64 * 64;
    if (total) {
      void* a = ::mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (a == MAP_FAILED) fail(TPPP_ERR_OUT_OF_MEMORY, "cannot map %zu bytes for the weights", total);
      ::madvise(a, total, MADV_HUGEPAGE);  // fewer page faults while the reads fill it (a hint)
      w->arena_ = a;
      w->arena_bytes_ = total;
      size_t off = 0;
      for (auto& e : w->entries_) {
        e.data = static_cast<char*>(a) + off;
        off += (e.bytes + 63) / 64 * 64;
      }
    }
  }
  std::vector<ReadJob> jobs;
  for (size_t i = 0; i < w->entries_.size(); i++) {
    const WeightEntry& e = w->entries_[i];
    c.plan_load(e.source, specs[i], e.data, e.bytes, e.dtype, &jobs, 16u << 20);
  }
  // Largest first, so the tail of the pool is short.
  std::stable_sort(jobs.begin(), jobs.end(), [](const ReadJob& a, const ReadJob& b) { return a.bytes > b.bytes; });
  with_progress(o, w->read_bytes_, [&](const std::atomic<int>* cancel, std::atomic<uint64_t>* done) {
    run_read_jobs(jobs, threads, cancel, done);
  });
  return w;
}

// Into one device allocation: read jobs of at most 4 MiB land in page-locked
// staging, then copy to their place on the lanes' streams (reads overlap
// copies). Entries with vocab padding are zeroed on the device first.
std::unique_ptr<WeightSet> WeightSet::load_device(std::unique_ptr<WeightSet> w, const Checkpoint& c,
                                                  const std::vector<SliceSpec>& specs, const LoadOptions& o,
                                                  int threads) {
  if (o.alloc) fail(TPPP_ERR_INVALID_ARGUMENT, "loader: a host allocator and a device destination were both given");
  // Offsets: the groups' tensors back to back, then the rest; 256-byte aligned starts.
  const size_t none = SIZE_MAX;
  std::vector<size_t> at(w->entries_.size(), none);
  std::unordered_map<std::string, size_t> index;
  for (size_t i = 0; i < w->entries_.size(); i++) index[w->entries_[i].name] = i;
  size_t total = 0;
  for (const auto& g : o.groups) {
    total = (total + 255) / 256 * 256;
    for (const std::string& n : g) {
      auto it = index.find(n);
      if (it == index.end() || at[it->second] != none) continue;
      at[it->second] = total;
      total += w->entries_[it->second].bytes;
    }
  }
  for (size_t i = 0; i < w->entries_.size(); i++)
    if (at[i] == none) {
      total = (total + 255) / 256 * 256;
      at[i] = total;
      total += w->entries_[i].bytes;
    }
  w->device_ = o.device;
  w->dev_arena_ = device_alloc(o.device, total);
  for (size_t i = 0; i < w->entries_.size(); i++) w->entries_[i].data = static_cast<char*>(w->dev_arena_) + at[i];
  std::vector<ReadJob> jobs;
  for (size_t i = 0; i < w->entries_.size(); i++) {
    const WeightEntry& e = w->entries_[i];
    bool zero = false;
    c.plan_load(e.source, specs[i], e.data, e.bytes, e.dtype, &jobs, 4u << 20, &zero);
    if (zero) device_zero(e.data, e.bytes, nullptr);  // the upload waits for the default stream first
  }
  std::stable_sort(jobs.begin(), jobs.end(), [](const ReadJob& a, const ReadJob& b) { return a.bytes > b.bytes; });
  std::vector<UploadJob> up(jobs.size());
  for (size_t i = 0; i < jobs.size(); i++) {
    up[i].dst = jobs[i].dst;
    up[i].bytes = static_cast<size_t>(jobs[i].bytes / dtype_size(jobs[i].src_dtype) * dtype_size(jobs[i].dst_dtype));
  }
  const int lanes = o.lanes > 0 ? o.lanes : threads;
  with_progress(o, w->read_bytes_, [&](const std::atomic<int>* cancel, std::atomic<uint64_t>* done) {
    device_staged_upload(
        o.device, up.data(), up.size(), lanes, o.timeout_ms,
        [&](size_t i, void* staging) {
          thread_local std::vector<char> bounce;
          ReadJob j = jobs[i];
          j.dst = static_cast<char*>(staging);
          run_read_job(j, &bounce);
        },
        cancel, done);
  });
  return w;
}

}  // namespace tppp
