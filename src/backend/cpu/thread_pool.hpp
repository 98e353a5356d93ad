// The CPU backend's one thread pool (docs/DESIGN.md section 9, "The CPU
// backend"): GEMMs, attention and the row-parallel ops all run on it, so a
// rank has exactly `threads` busy cores and no second library's pool spins
// beside ours (OpenBLAS's sched_yield loop was 11% of a decode profile).
// A parallel region is fork-join: fn(tid, nthreads) on every thread, the
// caller being tid 0; workers spin briefly between regions (a decode step
// opens ~10 regions per layer, microseconds apart), then sleep.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

namespace tppp {
namespace cpu {

class ThreadPool {
 public:
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;
  int size() const { return static_cast<int>(workers_.size()) + 1; }
  // fn(tid, nt) for tid in [0, nt), nt = min(size(), max_threads); returns
  // when every call has returned. fn must not throw. A region opened from
  // inside a region, or while another host thread holds the pool, runs on
  // the calling thread alone (nt = 1): never a deadlock.
  template <typename F>
  void parallel(F&& fn, int max_threads = 1 << 30) {
    struct Thunk {
      static void call(void* f, int tid, int nt) { (*static_cast<F*>(f))(tid, nt); }
    };
    run(&Thunk::call, &fn, max_threads);
  }

 private:
  using Fn = void (*)(void*, int, int);
  void run(Fn fn, void* arg, int max_threads);
  void worker(int tid);

  std::vector<std::thread> workers_;
  std::mutex busy_;  // one region at a time
  std::mutex m_;     // sleeping workers
  std::condition_variable cv_;
  std::atomic<uint64_t> gen_{0};  // bumped per region; workers wait for a change
  std::atomic<int> done_{0};
  std::atomic<int> sleepers_{0};
  std::atomic<bool> stop_{false};
  Fn fn_ = nullptr;
  void* arg_ = nullptr;
  int nt_ = 1;
};

// The process's pool, made at first use with cpu_threads() threads (and made
// again in a child after fork).
ThreadPool& pool();
// TPPP_CPU_THREADS, else the CPUs this process may run on divided by the
// ranks its launcher put on this host (LOCAL_WORLD_SIZE and kin), at least 1.
int cpu_threads();

}  // namespace cpu
}  // namespace tppp
