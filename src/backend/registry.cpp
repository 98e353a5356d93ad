// The backend table: CPU always; CUDA when built (the CUDA backend is a later
// issue, so a device ordinal is refused with the reason for now).
#include "backend/backend.hpp"
#include "backend/device.hpp"
#include "c_api.h"
#include "core/error.hpp"

namespace tppp {

std::unique_ptr<Backend> create_backend(int device) {
  if (device == TPPP_DEVICE_CPU) return create_cpu_backend();
  check_cuda_device(device);
  fail(TPPP_ERR_NOT_SUPPORTED, "CUDA device %d is present, but the CUDA backend is not in this version", device);
}

}  // namespace tppp
