// CachingAllocator: pool bookkeeping (see the header).
#include "cuda/caching_allocator.hpp"

#include "core/error.hpp"

namespace tppp {

size_t CachingAllocator::round_size(size_t b) {
  constexpr size_t kSmall = 512, kLarge = size_t(2) << 20, kSplit = size_t(1) << 20;
  if (b == 0) b = 1;
  const size_t g = b <= kSplit ? kSmall : kLarge;
  return (b + g - 1) / g * g;
}

CachingAllocator::~CachingAllocator() {
  std::lock_guard<std::mutex> lk(mu_);
  for (auto& p : pending_) {
    raw_.fence_release(p.fence);
    raw_.free(p.p);
  }
  pending_.clear();
  release_locked();
  for (auto& l : live_) raw_.free(l.first);  // leaked by a caller: still returned to the device
}

void CachingAllocator::sweep_locked() {
  for (size_t i = 0; i < pending_.size();) {
    if (raw_.fence_done(pending_[i].fence)) {
      raw_.fence_release(pending_[i].fence);
      idle_.emplace(pending_[i].size, pending_[i].p);
      pending_[i] = pending_.back();
      pending_.pop_back();
    } else {
      i++;
    }
  }
  st_.pending = pending_.size();
}

void CachingAllocator::release_locked() {
  for (auto& b : idle_) {
    raw_.free(b.second);
    st_.cached_bytes -= b.first;
  }
  idle_.clear();
}

void* CachingAllocator::alloc(size_t bytes) {
  const size_t want = round_size(bytes);
  std::lock_guard<std::mutex> lk(mu_);
  sweep_locked();
  // Best fit, but never a block more than twice the request (no 1 GiB block for a 4 KiB scratch).
  auto it = idle_.lower_bound(want);
  if (it != idle_.end() && it->first <= 2 * want) {
    void* p = it->second;
    const size_t sz = it->first;
    idle_.erase(it);
    live_.emplace(p, sz);
    st_.reuses++;
    st_.cached_bytes -= sz;
    st_.in_use_bytes += sz;
    return p;
  }
  void* p = raw_.alloc(want);
  if (!p) {  // flush the pool and try again
    release_locked();
    p = raw_.alloc(want);
  }
  if (!p)
    fail(TPPP_ERR_OUT_OF_MEMORY,
         "cannot allocate %zu bytes of %s (%zu in use by libtppp, %zu freed but still used by queued work)", want,
         what_, st_.in_use_bytes, st_.cached_bytes);
  live_.emplace(p, want);
  st_.raw_allocs++;
  st_.in_use_bytes += want;
  return p;
}

void CachingAllocator::free(void* p) {
  if (!p) return;
  std::lock_guard<std::mutex> lk(mu_);
  auto it = live_.find(p);
  if (it == live_.end()) fail(TPPP_ERR_INVALID_ARGUMENT, "free of %p, which is not %s libtppp allocated", p, what_);
  const size_t sz = it->second;
  live_.erase(it);
  st_.in_use_bytes -= sz;
  st_.cached_bytes += sz;
  pending_.push_back(Pending{p, sz, raw_.fence()});
  st_.pending = pending_.size();
}

void CachingAllocator::forget(void* p) {
  std::lock_guard<std::mutex> lk(mu_);
  auto it = live_.find(p);
  if (it == live_.end()) return;
  st_.in_use_bytes -= it->second;
  live_.erase(it);
}

void CachingAllocator::release_cached() {
  std::lock_guard<std::mutex> lk(mu_);
  sweep_locked();
  release_locked();
}

CachingAllocator::Stats CachingAllocator::stats() const {
  std::lock_guard<std::mutex> lk(mu_);
  return st_;
}

}  // namespace tppp
