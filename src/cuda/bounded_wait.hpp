// Bounded waits. cudaStreamSynchronize and cudaEventSynchronize block for as
// long as the GPU takes, and a stream can be held up forever (a collective
// whose peer died, a host callback that never returns). Every wait in the
// library goes through poll_until_done instead: it polls with a deadline and
// throws TPPP_ERR_TIMEOUT naming what it waited for. Pure logic (no CUDA
// here) so the deadline rules are tested on machines without a GPU.
#pragma once
#include <chrono>
#include <cstdint>
#include <thread>

#include "core/error.hpp"

namespace tppp {

enum class Poll { Done, Pending };

// Calls query() until it answers Done; past timeout_ms, throws TIMEOUT with
// `what`. query() may throw (a device error). The first 20 us spin (a short
// copy ends there, and its latency is on the decode path), up to 1 ms the
// thread yields between polls, after that it sleeps 50 us between them.
template <typename Query>
void poll_until_done(Query&& query, int timeout_ms, const char* what) {
  using clock = std::chrono::steady_clock;
  const clock::time_point t0 = clock::now(), deadline = t0 + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    if (query() == Poll::Done) return;
    const clock::time_point now = clock::now();
    if (now >= deadline) fail(TPPP_ERR_TIMEOUT, "%s: not done after %d ms (timeout_ms)", what, timeout_ms);
    const clock::duration waited = now - t0;
    if (waited < std::chrono::microseconds(20)) continue;
    if (waited < std::chrono::milliseconds(1))
      std::this_thread::yield();
    else
      std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
}

}  // namespace tppp
