// The backend table: CPU always; CUDA in CUDA builds (backend/cuda), else a
// device ordinal is refused naming what is missing.
#include "backend/backend.hpp"
#include "backend/device.hpp"
#include "c_api.h"
#include "core/error.hpp"

namespace tppp {

std::shared_ptr<Backend> create_backend(int device, int timeout_ms) {
  if (device == TPPP_DEVICE_CPU) return create_cpu_backend();
  check_cuda_device(device);
  return create_cuda_backend(device, timeout_ms);
}

}  // namespace tppp
