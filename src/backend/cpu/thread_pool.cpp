// The CPU backend's thread pool (see thread_pool.hpp).
#include "backend/cpu/thread_pool.hpp"

#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <chrono>

#include "core/env.hpp"
#include "core/launch_env.hpp"

namespace tppp {
namespace cpu {
namespace {

thread_local bool t_in_region = false;

inline void relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// How long a worker spins for the next region before it sleeps.
constexpr auto kSpin = std::chrono::microseconds(300);

}  // namespace

ThreadPool::ThreadPool(int threads) {
  for (int t = 1; t < std::max(1, threads); t++) workers_.emplace_back([this, t] { worker(t); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> l(m_);
    stop_.store(true);
    gen_.fetch_add(1);
  }
  cv_.notify_all();
  for (auto& w : workers_) w.join();
}

void ThreadPool::run(Fn fn, void* arg, int max_threads) {
  const int nt = std::max(1, std::min(size(), max_threads));
  std::unique_lock<std::mutex> busy(busy_, std::defer_lock);
  if (nt == 1 || t_in_region || !busy.try_lock()) {
    fn(arg, 0, 1);
    return;
  }
  fn_ = fn;
  arg_ = arg;
  nt_ = nt;
  done_.store(0, std::memory_order_relaxed);
  {
    // Under m_ so a worker that checked gen_ and is about to sleep cannot
    // miss the bump (it re-checks gen_ under m_ before waiting).
    std::lock_guard<std::mutex> l(m_);
    gen_.fetch_add(1, std::memory_order_release);
  }
  if (sleepers_.load(std::memory_order_acquire) > 0) cv_.notify_all();
  t_in_region = true;
  fn(arg, 0, nt);
  t_in_region = false;
  // Every worker reports, the ones outside [1, nt) included, so none still
  // reads fn_/arg_ when the next region writes them.
  const int want = static_cast<int>(workers_.size());
  while (done_.load(std::memory_order_acquire) < want) relax();
}

void ThreadPool::worker(int tid) {
  uint64_t seen = 0;
  t_in_region = true;  // a region opened from a worker runs inline
  for (;;) {
    uint64_t g = gen_.load(std::memory_order_acquire);
    if (g == seen) {
      const auto until = std::chrono::steady_clock::now() + kSpin;
      int spins = 0;
      while ((g = gen_.load(std::memory_order_acquire)) == seen) {
        relax();
        if (++spins % 64 == 0 && std::chrono::steady_clock::now() > until) {
          std::unique_lock<std::mutex> l(m_);
          sleepers_.fetch_add(1);
          cv_.wait(l, [&] { return gen_.load(std::memory_order_acquire) != seen; });
          sleepers_.fetch_sub(1);
        }
      }
    }
    seen = g;
    if (stop_.load()) return;
    if (tid < nt_) fn_(arg_, tid, nt_);
    done_.fetch_add(1, std::memory_order_release);
  }
}

int cpu_threads() {
  const long set = env_int(Env::CpuThreads, 0, 4096);
  if (set > 0) return static_cast<int>(set);
  int cpus = static_cast<int>(std::thread::hardware_concurrency());
  cpu_set_t s;
  if (sched_getaffinity(0, sizeof s, &s) == 0) cpus = CPU_COUNT(&s);
  return std::max(1, cpus / local_world_size(process_env));
}

// The pool lives until the process ends (never destroyed: its workers may be
// asleep in a wait at exit). A child made by fork() has none of the parent's
// workers, so fork clears the pointer and the child makes its own pool on
// first use (the tests fork ranks; so may a host).
namespace {
std::atomic<ThreadPool*> g_pool{nullptr};
std::mutex g_make;
ThreadPool* g_parents[16];  // the parents' pools, still referenced (not leaks to LeakSanitizer)
void forget_after_fork() {
  static int n = 0;
  ThreadPool* p = g_pool.exchange(nullptr);
  if (p && n < 16) g_parents[n++] = p;
}
}  // namespace

ThreadPool& pool() {
  ThreadPool* p = g_pool.load(std::memory_order_acquire);
  if (p) return *p;
  std::lock_guard<std::mutex> l(g_make);
  if (!(p = g_pool.load())) {
    static std::once_flag hook;
    std::call_once(hook, [] { pthread_atfork(nullptr, nullptr, forget_after_fork); });
    p = new ThreadPool(cpu_threads());
    g_pool.store(p, std::memory_order_release);
  }
  return *p;
}

}  // namespace cpu
}  // namespace tppp
