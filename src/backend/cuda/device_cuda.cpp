// CUDA device discovery through the (static) CUDA runtime.
#include <cuda_runtime_api.h>

#include "backend/device.hpp"
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
