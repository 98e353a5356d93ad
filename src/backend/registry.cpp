// The backend table: the one place that knows which backends are built in.
// CPU always; CUDA in CUDA builds (backend/cuda), else a device ordinal is
// refused naming what is missing.
#include "backend/backend.hpp"
#include "c_api.h"
#include "core/error.hpp"
#include "cuda/device.hpp"

namespace tppp {

#if !TPPP_HAVE_CUDA
std::unique_ptr<Backend> create_cuda_backend(int device, int) {
  fail(TPPP_ERR_NOT_SUPPORTED, "CUDA device %d requested, but libtppp was built without CUDA (configure with "
       "-DTPPP_CUDA=ON)", device);
}
#endif

std::shared_ptr<Backend> create_backend(int device, int timeout_ms) {
  if (device == TPPP_DEVICE_CPU) return create_cpu_backend();
  check_cuda_device(device);
  return create_cuda_backend(device, timeout_ms);
}

}  // namespace tppp
