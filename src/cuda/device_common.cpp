// check_cuda_device: the rules on top of cuda_device_count.
#include "cuda/device.hpp"
#include "core/error.hpp"

namespace tppp {

void check_cuda_device(int ordinal) {
  std::string why;
  int n = cuda_device_count(&why);
  if (n <= 0)
    fail(TPPP_ERR_NOT_SUPPORTED, "CUDA device %d requested but no CUDA device can be used: %s", ordinal, why.c_str());
  if (ordinal >= n)
    fail(TPPP_ERR_INVALID_ARGUMENT, "CUDA device %d requested but only %d device(s) are visible", ordinal, n);
}

}  // namespace tppp
