// CUDA device discovery through the (static) CUDA runtime.
#include <cuda_runtime_api.h>

#include <fstream>
#include <mutex>
#include <string>
#include <vector>

#include "cuda/device.hpp"
#include "cuda/cuda_check.hpp"
#include "core/error.hpp"

namespace tppp {

bool cuda_built() { return true; }

int cuda_device_count(std::string* why) {
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    if (why) *why = strf("cudaGetDeviceCount: %s (%s)", cudaGetErrorString(e), cudaGetErrorName(e));
    cudaGetLastError();  // clear the sticky-free error state
    return 0;
  }
  if (n == 0 && why) *why = "cudaGetDeviceCount reports 0 devices";
  return n;
}

}  // namespace tppp

namespace tppp {


void device_zero(void* dst, size_t n, void* stream) {
  check_cuda(cudaMemsetAsync(dst, 0, n, static_cast<cudaStream_t>(stream)), "loader: cudaMemsetAsync");
}

std::string cuda_device_identity(int ordinal) {
  char bus[64] = {0};
  check_cuda(cudaDeviceGetPCIBusId(bus, sizeof bus - 1, ordinal), "cudaDeviceGetPCIBusId");
  std::string boot;
  std::ifstream f("/proc/sys/kernel/random/boot_id");
  std::getline(f, boot);
  return boot + "/" + bus;
}

bool is_device_pointer(const void* p) {
  cudaPointerAttributes a{};
  if (cudaPointerGetAttributes(&a, p) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return a.type == cudaMemoryTypeDevice || a.type == cudaMemoryTypeManaged;
}

// Bound on each wait for one staging copy (at most 8 MiB: milliseconds when
// the stream is free; past this, `stream` is held up by other work).
constexpr int kUploadWaitMs = 60000;

void upload_pieces(const UploadPiece* pieces, size_t n, void* stream_p,
                   void (*fill)(const void* key, void* staging, size_t bytes, void* user), void* user) {
  if (n == 0) return;
  cudaStream_t stream = static_cast<cudaStream_t>(stream_p);
  size_t cap = 0;
  for (size_t i = 0; i < n; i++) cap = pieces[i].bytes > cap ? pieces[i].bytes : cap;
  constexpr int kBufs = 3;  // one being filled, up to two in flight to the device
  struct Slot {
    void* host = nullptr;
    cudaEvent_t done = nullptr;
    bool busy = false;
  } slots[kBufs];
  // Waits for the copies in flight, then frees. A copy that does not end in
  // time may still land later: its buffer is left allocated (a leak, not a
  // DMA into freed memory). After an error the wait is short: the stream is
  // likely stuck, and the first error is what gets thrown.
  auto cleanup = [&](bool throwing) {
    tppp_status st = TPPP_OK;
    std::string msg;
    for (Slot& s : slots) {
      bool done = true;
      if (s.busy && s.done) {
        try {
          wait_event(s.done, throwing ? 1000 : kUploadWaitMs, "loader: waiting for a staging copy");
        } catch (const Error& e) {
          done = false;
          if (st == TPPP_OK) st = e.status(), msg = e.what();
        }
      }
      if (s.done) cudaEventDestroy(s.done);
      if (s.host && done) cudaFreeHost(s.host);
    }
    if (st != TPPP_OK && !throwing) throw Error(st, msg);
  };
  try {
    for (Slot& s : slots) {
      check_cuda(cudaMallocHost(&s.host, cap), "loader: cudaMallocHost of a staging buffer");
      check_cuda(cudaEventCreateWithFlags(&s.done, cudaEventDisableTiming), "loader: cudaEventCreate");
    }
    for (size_t i = 0; i < n; i++) {
      Slot& s = slots[i % kBufs];
      if (s.busy) wait_event(s.done, kUploadWaitMs, "loader: waiting for a staging copy");
      s.busy = false;
      fill(pieces[i].key, s.host, pieces[i].bytes, user);  // reads overlap the copies in flight
      check_cuda(cudaMemcpyAsync(pieces[i].dst, s.host, pieces[i].bytes, cudaMemcpyHostToDevice, stream),
                 "loader: cudaMemcpyAsync to the device");
      check_cuda(cudaEventRecord(s.done, stream), "loader: cudaEventRecord");
      s.busy = true;
    }
  } catch (...) {
    cleanup(true);
    throw;
  }
  cleanup(false);  // waits for the last copies
}

void* device_alloc(int device, size_t bytes) {
  DeviceScope ds(device);
  void* p = nullptr;
  const cudaError_t e = cudaMalloc(&p, bytes ? bytes : 1);
  if (e != cudaSuccess) {
    cudaGetLastError();
    fail(TPPP_ERR_OUT_OF_MEMORY, "loader: cudaMalloc of %zu bytes on device %d: %s", bytes, device,
         cudaGetErrorString(e));
  }
  return p;
}

void device_free(int device, void* p) noexcept {
  if (!p) return;
  int prev = 0;
  cudaGetDevice(&prev);
  cudaSetDevice(device);
  cudaFree(p);
  cudaSetDevice(prev);
}

void device_staged_upload(int device, const UploadJob* jobs, size_t n, int lanes, int timeout_ms,
                          const std::function<void(size_t, void*)>& fill, const std::atomic<int>* cancel,
                          std::atomic<uint64_t>* done_bytes) {
  if (n == 0) return;
  DeviceScope ds(device);
  // Work queued on the legacy default stream (zeroed padding) lands first:
  // the copy streams below do not synchronise with it.
  wait_stream(nullptr, timeout_ms, "loader: waiting for the default stream");
  std::vector<cudaStream_t> streams(static_cast<size_t>(lanes > 0 ? lanes : 1), nullptr);
  std::mutex mu;
  std::vector<cudaEvent_t> all, idle;
  auto cleanup = [&] {
    for (cudaStream_t s : streams)
      if (s) cudaStreamDestroy(s);
    for (cudaEvent_t ev : all) cudaEventDestroy(ev);
  };
  try {
    for (cudaStream_t& s : streams)
      check_cuda(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "loader: cudaStreamCreate");
    CopyEngine e;
    e.alloc_staging = [device](size_t bytes) -> void* {
      DeviceScope d(device);
      void* p = nullptr;
      if (cudaHostAlloc(&p, bytes, cudaHostAllocPortable) != cudaSuccess) {
        cudaGetLastError();
        return nullptr;
      }
      return p;
    };
    e.free_staging = [](void* p) { cudaFreeHost(p); };
    e.copy = [&](int lane, void* dst, const void* src, size_t bytes) -> uint64_t {
      DeviceScope d(device);
      cudaEvent_t ev = nullptr;
      {
        std::lock_guard<std::mutex> lk(mu);
        if (!idle.empty()) {
          ev = idle.back();
          idle.pop_back();
        }
      }
      if (!ev) {
        check_cuda(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming), "loader: cudaEventCreate");
        std::lock_guard<std::mutex> lk(mu);
        all.push_back(ev);
      }
      cudaStream_t s = streams[static_cast<size_t>(lane) % streams.size()];
      check_cuda(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, s), "loader: cudaMemcpyAsync to the device");
      check_cuda(cudaEventRecord(ev, s), "loader: cudaEventRecord");
      return reinterpret_cast<uint64_t>(ev);
    };
    e.wait = [&](uint64_t f) {
      cudaEvent_t ev = reinterpret_cast<cudaEvent_t>(f);
      wait_event(ev, timeout_ms, "loader: waiting for a staging copy to the device");
      std::lock_guard<std::mutex> lk(mu);
      idle.push_back(ev);
    };
    staged_upload(e, jobs, n, lanes, fill, cancel, done_bytes);
  } catch (...) {
    cleanup();
    throw;
  }
  cleanup();
}

}  // namespace tppp
