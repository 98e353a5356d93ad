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

// The decoder ops a backend has not implemented yet: refused by name.
namespace {
[[noreturn]] void lacks(const Backend& b, const char* op) {
  fail(TPPP_ERR_NOT_SUPPORTED, "the %s backend has no %s op", b.name(), op);
}
}  // namespace
std::unique_ptr<PackedWeight> Backend::view_weight(const void*, int64_t, int64_t, int32_t) {
  lacks(*this, "view_weight (weights in place in its memory)");
}
void Backend::rms_norm(const void*, void*, const void*, void*, int64_t, int64_t, float, int32_t, void*) {
  lacks(*this, "rms_norm");
}
void Backend::head_rms_norm(void*, int64_t, int64_t, int64_t, int64_t, const void*, float, int32_t, void*) {
  lacks(*this, "head_rms_norm");
}
void Backend::rope(void*, int64_t, int64_t, int64_t, int64_t, const int32_t*, const float*, int32_t, void*) {
  lacks(*this, "rope");
}
void Backend::kv_write(const void*, const void*, int64_t, int64_t, int64_t, int64_t, const int32_t*, void*, void*,
                       int32_t, void*) {
  lacks(*this, "kv_write");
}
void Backend::attention(const void*, int64_t, int64_t, int64_t, int64_t, int64_t, const void*, const void*, int64_t,
                        const int32_t*, const int32_t*, const int32_t*, float, void*, int32_t, void*) {
  lacks(*this, "attention");
}

std::shared_ptr<Backend> create_backend(int device, int timeout_ms) {
  if (device == TPPP_DEVICE_CPU) return create_cpu_backend();
  check_cuda_device(device);
  return create_cuda_backend(device, timeout_ms);
}

}  // namespace tppp
