// The cuBLASLt plan cache's key and table: one plan (descriptors + chosen
// algorithm) per GEMM shape and dtype, so the heuristic query (and the
// optional timed pick) runs once per shape, not once per call. Pure C++ so
// it is unit-tested without a GPU.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <unordered_map>

namespace tppp {

struct GemmKey {
  int64_t m = 0, n = 0, k = 0, ldy = 0;
  int32_t dtype = 0, y_dtype = 0;
  int32_t align = 0;  // smallest alignment (bytes, <= 256) of the operand pointers: heuristics depend on it
  bool bias = false, tf32 = false;
  bool operator==(const GemmKey& o) const {
    return m == o.m && n == o.n && k == o.k && ldy == o.ldy && dtype == o.dtype && y_dtype == o.y_dtype &&
           align == o.align && bias == o.bias && tf32 == o.tf32;
  }
};

struct GemmKeyHash {
  size_t operator()(const GemmKey& g) const {
    uint64_t h = 1469598103934665603ull;
    auto mix = [&h](uint64_t v) { h = (h ^ v) * 1099511628211ull; };
    mix(static_cast<uint64_t>(g.m));
    mix(static_cast<uint64_t>(g.n));
    mix(static_cast<uint64_t>(g.k));
    mix(static_cast<uint64_t>(g.ldy));
    mix(static_cast<uint64_t>(g.dtype) << 8 | static_cast<uint64_t>(g.y_dtype));
    mix(static_cast<uint64_t>(g.align));
    mix(static_cast<uint64_t>(g.bias) << 1 | static_cast<uint64_t>(g.tf32));
    return static_cast<size_t>(h);
  }
};

// Bounded: a server sees many M values (every prefill length); past `cap`
// plans the table is cleared (plans are cheap to rebuild, unbounded growth is not).
template <typename Plan>
class PlanCache {
 public:
  explicit PlanCache(size_t cap = 4096) : cap_(cap) {}
  // The plan for key, made by make() on a miss (shared: a plan stays alive
  // while a caller holds it, even across a clear).
  std::shared_ptr<Plan> get(const GemmKey& key, const std::function<std::shared_ptr<Plan>()>& make) {
    std::lock_guard<std::mutex> lk(mu_);
    auto it = map_.find(key);
    if (it != map_.end()) {
      hits_++;
      return it->second;
    }
    misses_++;
    std::shared_ptr<Plan> p = make();
    if (map_.size() >= cap_) {
      map_.clear();
      clears_++;
    }
    map_.emplace(key, p);
    return p;
  }
  size_t size() const {
    std::lock_guard<std::mutex> lk(mu_);
    return map_.size();
  }
  size_t hits() const { return hits_; }
  size_t misses() const { return misses_; }
  size_t clears() const { return clears_; }

 private:
  size_t cap_;
  mutable std::mutex mu_;
  std::unordered_map<GemmKey, std::shared_ptr<Plan>, GemmKeyHash> map_;
  size_t hits_ = 0, misses_ = 0, clears_ = 0;
};

}  // namespace tppp
