// The CUDA runtime's answers in a build without CUDA (see device.hpp).
#include "core/error.hpp"
#include "cuda/device.hpp"

namespace tppp {

bool cuda_built() { return false; }

int cuda_device_count(std::string* why) {
  if (why) *why = "libtppp was built without CUDA (configure with -DTPPP_CUDA=ON)";
  return 0;
}

bool is_device_pointer(const void*) { return false; }
std::string cuda_device_identity(int) { return std::string(); }

void device_zero(void*, size_t, void*) {
  fail(TPPP_ERR_NOT_SUPPORTED, "device destinations need a CUDA build of libtppp (configure with -DTPPP_CUDA=ON)");
}

void upload_pieces(const UploadPiece*, size_t, void*, void (*)(const void*, void*, size_t, void*), void*) {
  fail(TPPP_ERR_NOT_SUPPORTED, "device destinations need a CUDA build of libtppp (configure with -DTPPP_CUDA=ON)");
}

void device_staged_upload(int, const UploadJob*, size_t, int, int, const std::function<void(size_t, void*)>&,
                          const std::atomic<int>*, std::atomic<uint64_t>*) {
  fail(TPPP_ERR_NOT_SUPPORTED, "device destinations need a CUDA build of libtppp (configure with -DTPPP_CUDA=ON)");
}
void* device_alloc(int, size_t) {
  fail(TPPP_ERR_NOT_SUPPORTED, "device destinations need a CUDA build of libtppp (configure with -DTPPP_CUDA=ON)");
}
void device_free(int, void*) noexcept {}

}  // namespace tppp
