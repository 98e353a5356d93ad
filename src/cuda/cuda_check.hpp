// CUDA support shared by the CUDA backend and the device transports: error
// checks that throw TPPP_ERR_CUDA naming the call and CUDA's own error name,
// the one void* -> cudaStream_t conversion, bounded stream/event waits, and
// the current-device scope. Knows no backend and no transport.
#pragma once
#include <cuda_runtime_api.h>

#include "cuda/bounded_wait.hpp"
#include "core/error.hpp"

namespace tppp {

inline void check_cuda(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    cudaGetLastError();  // clear a non-sticky error so the next call starts clean
    fail(TPPP_ERR_CUDA, "%s: %s (%s)", what, cudaGetErrorString(e), cudaGetErrorName(e));
  }
}

// The C API and the interfaces carry streams as void* (c_api.h has no CUDA header).
inline cudaStream_t as_stream(void* s) { return static_cast<cudaStream_t>(s); }

// Waits for everything queued on a stream (an event: up to its record) with
// a deadline: TPPP_ERR_TIMEOUT naming `what` past timeout_ms, TPPP_ERR_CUDA
// on a device error. Never on a capturing stream (the query ends capture).
template <typename Handle>
void wait_cuda(cudaError_t (*query)(Handle), Handle h, int timeout_ms, const char* what) {
  poll_until_done(
      [&] {
        const cudaError_t e = query(h);
        if (e == cudaErrorNotReady) return Poll::Pending;
        check_cuda(e, what);
        return Poll::Done;
      },
      timeout_ms, what);
}
inline void wait_stream(cudaStream_t s, int timeout_ms, const char* what) {
  wait_cuda(cudaStreamQuery, s, timeout_ms, what);
}
inline void wait_event(cudaEvent_t ev, int timeout_ms, const char* what) {
  wait_cuda(cudaEventQuery, ev, timeout_ms, what);
}

// Makes `device` current for the scope (the host may drive several devices).
class DeviceScope {
 public:
  explicit DeviceScope(int device) {
    cudaGetDevice(&prev_);
    if (prev_ != device) check_cuda(cudaSetDevice(device), "cudaSetDevice");
  }
  ~DeviceScope() {
    int now = -1;
    cudaGetDevice(&now);
    if (now != prev_) cudaSetDevice(prev_);
  }

 private:
  int prev_ = 0;
};

}  // namespace tppp
