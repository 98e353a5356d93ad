// Device discovery in a build without CUDA.
#include "backend/device.hpp"

namespace tppp {

bool cuda_built() { return false; }

int cuda_device_count(std::string* why) {
  if (why) *why = "libtppp was built without CUDA (configure with -DTPPP_CUDA=ON)";
  return 0;
}

}  // namespace tppp
