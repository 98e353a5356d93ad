// The CUDA support tier's pure logic, on every machine (suite "cuda_logic"):
// the caching allocator, the cuBLASLt plan cache and the bounded wait, over
// fakes, so their rules are tested where there is no GPU.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <mutex>
#include <tuple>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "backend/cuda/plan_cache.hpp"
#include "core/error.hpp"
#include "cuda/bounded_wait.hpp"
#include "cuda/caching_allocator.hpp"
#include "cuda/staged_upload.hpp"
#include "harness.hpp"

namespace {

// A fake device: addresses from a counter, fences completed by hand.
struct FakeDevice {
  std::map<void*, size_t> live;
  uintptr_t next = 0x10000;
  size_t capacity = size_t(1) << 30, used = 0;
  uint64_t fences = 0;
  std::set<uint64_t> done, released;
  tppp::CachingAllocator::Raw raw() {
    tppp::CachingAllocator::Raw r;
    r.alloc = [this](size_t n) -> void* {
      if (used + n > capacity) return nullptr;
      void* p = reinterpret_cast<void*>(next);
      next += n + 4096;
      live[p] = n;
      used += n;
      return p;
    };
    r.free = [this](void* p) {
      used -= live.at(p);
      live.erase(p);
    };
    r.fence = [this] { return ++fences; };
    r.fence_done = [this](uint64_t f) { return done.count(f) > 0; };
    r.fence_release = [this](uint64_t f) { released.insert(f); };
    return r;
  }
};

}  // namespace

TEST_SUITE("cuda_logic") {
  TEST_CASE("caching allocator: rounding") {
    using A = tppp::CachingAllocator;
    CHECK(A::round_size(0) == 512);
    CHECK(A::round_size(1) == 512);
    CHECK(A::round_size(513) == 1024);
    CHECK(A::round_size(size_t(1) << 20) == (size_t(1) << 20));
    CHECK(A::round_size((size_t(1) << 20) + 1) == (size_t(2) << 20));
    CHECK(A::round_size((size_t(5) << 20) + 7) == (size_t(6) << 20));
  }

  TEST_CASE("caching allocator: a freed block is reused only after its fence") {
    FakeDevice d;
    tppp::CachingAllocator a(d.raw());
    void* p = a.alloc(1000);
    CHECK(a.stats().raw_allocs == 1);
    a.free(p);
    CHECK(a.stats().pending == 1);
    void* q = a.alloc(1000);  // fence 1 not passed: a fresh block
    CHECK(q != p);
    CHECK(a.stats().raw_allocs == 2);
    d.done.insert(1);
    void* r = a.alloc(900);  // same rounded size, fence passed: p comes back
    CHECK(r == p);
    CHECK(a.stats().reuses == 1);
    CHECK(d.released.count(1) == 1);
    a.free(q);
    a.free(r);
    CHECK(a.stats().in_use_bytes == 0);
  }

  TEST_CASE("caching allocator: best fit, never more than twice the request") {
    FakeDevice d;
    tppp::CachingAllocator a(d.raw());
    void* big = a.alloc(size_t(64) << 20);
    void* mid = a.alloc(4096);
    a.free(big);
    a.free(mid);
    d.done.insert({1, 2});
    void* small = a.alloc(2048);  // 4096 <= 2 * 2048: reused
    CHECK(small == mid);
    void* s2 = a.alloc(2048);  // only the 64 MiB block is idle: too big, fresh
    CHECK(s2 != big);
    CHECK(a.stats().raw_allocs == 3);
    a.free(small);
    a.free(s2);
  }

  TEST_CASE("caching allocator: out of memory flushes the pool, then names the sizes") {
    FakeDevice d;
    d.capacity = size_t(8) << 20;
    tppp::CachingAllocator a(d.raw());
    void* p = a.alloc(size_t(6) << 20);
    a.free(p);
    d.done.insert(1);
    void* q = a.alloc(size_t(4) << 20);  // idle 6 MiB > 2x4: flushed, then allocated
    CHECK(q != nullptr);
    CHECK(d.live.size() == 1);
    try {
      a.alloc(size_t(6) << 20);
      FAIL("expected OUT_OF_MEMORY");
    } catch (const tppp::Error& e) {
      CHECK(e.status() == TPPP_ERR_OUT_OF_MEMORY);
      CHECK(std::string(e.what()).find("6291456 bytes") != std::string::npos);
    }
    CHECK_THROWS_AS(a.free(reinterpret_cast<void*>(0x1)), tppp::Error);
    a.free(nullptr);
    a.free(q);
  }

  TEST_CASE("caching allocator: destruction returns every block") {
    FakeDevice d;
    {
      tppp::CachingAllocator a(d.raw());
      void* p = a.alloc(100);
      a.alloc(200);  // never freed by the caller
      a.free(p);     // pending at destruction
    }
    CHECK(d.live.empty());
    CHECK(d.used == 0);
  }

  TEST_CASE("caching allocator: a forgotten block is never reused nor freed") {
    FakeDevice d;
    void* lost = nullptr;
    {
      tppp::CachingAllocator a(d.raw(), "pinned host memory");
      lost = a.alloc(4096);
      a.forget(lost);  // a late copy may still land in it
      CHECK(a.stats().in_use_bytes == 0);
      void* q = a.alloc(4096);
      CHECK(q != lost);
      a.free(q);
      d.done.insert(1);
      CHECK(a.alloc(4096) == q);  // the freed one is reused, the forgotten one is not
      a.forget(reinterpret_cast<void*>(0x1));  // unknown: ignored
      try {
        a.free(lost);
        FAIL("free of a forgotten block must throw");
      } catch (const tppp::Error& e) {
        CHECK(e.status() == TPPP_ERR_INVALID_ARGUMENT);
        CHECK(std::string(e.what()).find("pinned host memory") != std::string::npos);
      }
    }
    CHECK(d.live.size() == 1);  // only the forgotten block is left
    CHECK(d.live.count(lost) == 1);
  }

  TEST_CASE("plan cache: one plan per key, bounded") {
    struct Plan {
      int id;
    };
    tppp::PlanCache<Plan> c(3);
    int made = 0;
    auto make = [&] { return std::make_shared<Plan>(Plan{++made}); };
    tppp::GemmKey k;
    k.m = 1;
    k.n = 4096;
    k.k = 4096;
    k.ldy = 4096;
    k.dtype = TPPP_DTYPE_BF16;
    k.y_dtype = TPPP_DTYPE_BF16;
    k.align = 256;
    auto p1 = c.get(k, make);
    CHECK(c.get(k, make)->id == p1->id);
    CHECK(c.hits() == 1);
    tppp::GemmKey k2 = k;
    k2.align = 16;  // alignment changes the heuristic's answer: another plan
    CHECK(c.get(k2, make)->id != p1->id);
    tppp::GemmKey k3 = k;
    k3.bias = true;
    c.get(k3, make);
    CHECK(c.size() == 3);
    tppp::GemmKey k4 = k;
    k4.m = 8;
    c.get(k4, make);  // past the cap: cleared, then inserted
    CHECK(c.size() == 1);
    CHECK(c.clears() == 1);
    CHECK(p1->id == 1);  // a held plan outlives the clear
    CHECK(tppp::GemmKeyHash()(k) != tppp::GemmKeyHash()(k4));
  }
}

TEST_SUITE("cuda_logic") {
  TEST_CASE("bounded wait: done, done later, device error, deadline") {
    int polls = 0;
    tppp::poll_until_done(
        [&] {
          ++polls;
          return tppp::Poll::Done;
        },
        1000, "x");
    CHECK(polls == 1);
    polls = 0;  // done on the 5000th poll: past the spin, into the yields
    tppp::poll_until_done([&] { return ++polls == 5000 ? tppp::Poll::Done : tppp::Poll::Pending; }, 10000, "x");
    CHECK(polls == 5000);
    const auto t0 = std::chrono::steady_clock::now();  // done after 30 ms of sleeping polls
    tppp::poll_until_done(
        [&] {
          return std::chrono::steady_clock::now() - t0 > std::chrono::milliseconds(30) ? tppp::Poll::Done
                                                                                        : tppp::Poll::Pending;
        },
        10000, "x");
    try {  // an error from the query passes through unchanged
      tppp::poll_until_done([]() -> tppp::Poll { tppp::fail(TPPP_ERR_CUDA, "device fell over"); }, 1000, "x");
      FAIL("no throw");
    } catch (const tppp::Error& e) {
      CHECK(e.status() == TPPP_ERR_CUDA);
      CHECK(std::string(e.what()) == "device fell over");
    }
    const auto t1 = std::chrono::steady_clock::now();
    try {  // never done: TIMEOUT naming what it waited for, not before the deadline
      tppp::poll_until_done([] { return tppp::Poll::Pending; }, 80, "staging: waiting for the copy");
      FAIL("no throw");
    } catch (const tppp::Error& e) {
      CHECK(e.status() == TPPP_ERR_TIMEOUT);
      CHECK(std::string(e.what()).find("staging: waiting for the copy") != std::string::npos);
      CHECK(std::string(e.what()).find("80 ms") != std::string::npos);
      CHECK(std::chrono::steady_clock::now() - t1 >= std::chrono::milliseconds(80));
    }
  }
}

namespace {

// A host engine for staged_upload: copies run when their fence is waited
// for (so a fill that rewrote a buffer still in flight would be caught),
// staging allocations are counted.
struct HostEngine {
  std::mutex mu;
  std::map<uint64_t, std::tuple<void*, const void*, size_t, std::vector<char>>> pending;  // fence -> copy + snapshot
  uint64_t fences = 0;
  int live = 0, allocs = 0, fail_alloc_after = 1 << 30;
  uint64_t stuck_fence = 0;  // a copy that never finishes: every wait on it times out
  std::set<int> lanes_seen;
  tppp::CopyEngine get() {
    tppp::CopyEngine e;
    e.alloc_staging = [this](size_t n) -> void* {
      std::lock_guard<std::mutex> lk(mu);
      if (allocs >= fail_alloc_after) return nullptr;
      allocs++;
      live++;
      return new char[n];
    };
    e.free_staging = [this](void* p) {
      std::lock_guard<std::mutex> lk(mu);
      for (auto& kv : pending) CHECK(std::get<1>(kv.second) != p);  // never freed under a copy in flight
      live--;
      delete[] static_cast<char*>(p);
    };
    e.copy = [this](int lane, void* dst, const void* src, size_t n) {
      std::lock_guard<std::mutex> lk(mu);
      lanes_seen.insert(lane);
      const char* c = static_cast<const char*>(src);
      pending[++fences] = std::make_tuple(dst, src, n, std::vector<char>(c, c + n));
      return fences;
    };
    e.wait = [this](uint64_t f) {
      std::lock_guard<std::mutex> lk(mu);
      auto it = pending.find(f);
      REQUIRE(it != pending.end());
      if (f == stuck_fence) tppp::fail(TPPP_ERR_TIMEOUT, "staging: the copy did not finish in 5 ms");
      auto& [dst, src, n, snap] = it->second;
      CHECK(std::memcmp(src, snap.data(), n) == 0);  // the buffer was not touched while in flight
      std::memcpy(dst, src, n);
      pending.erase(it);
    };
    return e;
  }
};

}  // namespace

TEST_SUITE("cuda_logic") {
  TEST_CASE("staged upload: every job lands, buffers untouched in flight, all freed") {
    for (int lanes : {1, 3, 8}) {
      CAPTURE(lanes);
      HostEngine he;
      std::vector<char> dst(1 << 20, 0);
      std::vector<tppp::UploadJob> jobs;
      size_t off = 0;
      for (size_t i = 0; off < dst.size(); i++) {
        const size_t n = std::min(dst.size() - off, (i * 7919) % 30000);
        jobs.push_back({dst.data() + off, n});
        off += n;
      }
      std::atomic<uint64_t> done{0};
      tppp::staged_upload(he.get(), jobs.data(), jobs.size(), lanes, [&](size_t i, void* st) {
        for (size_t b = 0; b < jobs[i].bytes; b++) static_cast<char*>(st)[b] = static_cast<char>((i * 131 + b) % 251);
      }, nullptr, &done);
      CHECK(he.pending.empty());
      CHECK(he.live == 0);
      CHECK(done.load() == dst.size());
      CHECK(!he.lanes_seen.empty());  // which lanes get jobs is up to the scheduler
      CHECK(*he.lanes_seen.rbegin() < lanes);
      bool ok = true;
      for (size_t i = 0; i < jobs.size(); i++)
        for (size_t b = 0; b < jobs[i].bytes; b++)
          ok = ok && jobs[i].dst[b] == static_cast<char>((i * 131 + b) % 251);
      CHECK(ok);
    }
  }
  TEST_CASE("staged upload: a failing read, a cancel, no staging memory") {
    std::vector<char> dst(4096);
    std::vector<tppp::UploadJob> jobs(64, tppp::UploadJob{dst.data(), 64});
    {
      HostEngine he;
      try {
        tppp::staged_upload(he.get(), jobs.data(), jobs.size(), 4, [](size_t i, void*) {
          if (i == 9) tppp::fail(TPPP_ERR_IO, "read of job 9 failed");
        }, nullptr, nullptr);
        FAIL("no error");
      } catch (const tppp::Error& e) {
        CHECK(e.status() == TPPP_ERR_IO);
        CHECK(std::string(e.what()).find("job 9") != std::string::npos);
      }
      CHECK(he.pending.empty());
      CHECK(he.live == 0);
    }
    {
      HostEngine he;
      std::atomic<int> cancel{1};
      try {
        tppp::staged_upload(he.get(), jobs.data(), jobs.size(), 2, [](size_t, void*) {}, &cancel, nullptr);
        FAIL("no error");
      } catch (const tppp::Error& e) {
        CHECK(e.status() == TPPP_ERR_ABORTED);
      }
      CHECK(he.live == 0);
    }
    {
      HostEngine he;
      he.fail_alloc_after = 3;
      try {
        tppp::staged_upload(he.get(), jobs.data(), jobs.size(), 2, [](size_t, void*) {}, nullptr, nullptr);
        FAIL("no error");
      } catch (const tppp::Error& e) {
        CHECK(e.status() == TPPP_ERR_OUT_OF_MEMORY);
        CHECK(std::string(e.what()).find("page-locked staging") != std::string::npos);
      }
      CHECK(he.live == 0);
    }
  }
  TEST_CASE("staged upload: a copy whose wait times out keeps its buffer (leaked, never freed under DMA)") {
    std::vector<char> dst(64 * 64);
    std::vector<tppp::UploadJob> jobs;
    for (size_t i = 0; i < 64; i++) jobs.push_back({dst.data() + i * 64, 64});
    for (int lanes : {1, 2}) {
      CAPTURE(lanes);
      HostEngine he;
      he.stuck_fence = 3;  // a lane waits on it when it reuses that slot: the wait in the loop throws
      try {
        tppp::staged_upload(he.get(), jobs.data(), jobs.size(), lanes, [](size_t, void*) {}, nullptr, nullptr);
        FAIL("no error");
      } catch (const tppp::Error& e) {
        CHECK(e.status() == TPPP_ERR_TIMEOUT);
      }
      REQUIRE(he.pending.size() == 1);  // the stuck copy
      CHECK(he.live == 1);              // its buffer alone is kept
      delete[] static_cast<const char*>(std::get<1>(he.pending.begin()->second));
    }
  }
}
