// staged_upload (see the header).
#include "cuda/staged_upload.hpp"

#include <algorithm>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "c_api.h"
#include "core/error.hpp"

namespace tppp {

void staged_upload(const CopyEngine& e, const UploadJob* jobs, size_t n, int lanes,
                   const std::function<void(size_t, void*)>& fill, const std::atomic<int>* cancel,
                   std::atomic<uint64_t>* done_bytes) {
  if (n == 0) return;
  size_t cap = 1;
  for (size_t i = 0; i < n; i++) cap = std::max(cap, jobs[i].bytes);
  lanes = std::max(1, std::min(lanes, static_cast<int>(n)));
  std::atomic<size_t> next{0};
  std::atomic<int> failed{0};
  std::mutex mu;
  std::unique_ptr<Error> first;
  auto note = [&](const Error& err) {
    std::lock_guard<std::mutex> lk(mu);
    if (!first) first.reset(new Error(err));
    failed.store(1);
  };
  auto lane = [&](int id) {
    struct Slot {
      void* buf = nullptr;
      uint64_t fence = 0;
      bool busy = false;
    } slots[2];
    // Every copy this lane queued finishes before its buffer is freed.
    auto drain = [&] {
      for (Slot& s : slots) {
        if (s.busy) {
          try {
            e.wait(s.fence);
          } catch (const Error& err) {
            note(err);
            s.buf = nullptr;  // a copy that never finished may still read it: leak, never free under DMA
          }
          s.busy = false;
        }
        if (s.buf) e.free_staging(s.buf);
        s.buf = nullptr;
      }
    };
    try {
      for (Slot& s : slots)
        if (!(s.buf = e.alloc_staging(cap)))
          fail(TPPP_ERR_OUT_OF_MEMORY, "loader: cannot allocate %zu bytes of page-locked staging", cap);
      for (unsigned k = 0;; k++) {
        const size_t i = next.fetch_add(1);
        if (i >= n || failed.load()) break;
        if (cancel && cancel->load()) fail(TPPP_ERR_ABORTED, "loading was cancelled");
        Slot& s = slots[k % 2];
        if (s.busy) {
          e.wait(s.fence);  // throws on a timeout: the slot stays busy, so drain never frees it under the copy
          s.busy = false;
        }
        fill(i, s.buf);  // overlaps the copy of the other slot
        if (done_bytes) done_bytes->fetch_add(jobs[i].bytes);
        if (jobs[i].bytes) {
          s.fence = e.copy(id, jobs[i].dst, s.buf, jobs[i].bytes);
          s.busy = true;
        }
      }
    } catch (const Error& err) {
      note(err);
    } catch (const std::exception& ex) {
      note(Error(TPPP_ERR_INTERNAL, ex.what()));
    }
    drain();
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < lanes; t++) pool.emplace_back(lane, t);
  lane(0);
  for (auto& t : pool) t.join();
  if (first) throw *first;
}

}  // namespace tppp
