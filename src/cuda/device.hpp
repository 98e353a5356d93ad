// The CUDA runtime as the tiers above see it, with no CUDA header: which
// devices this process can use, where a pointer lives, the loader's staged
// uploads. Built with CUDA (device_cuda.cpp) it asks the runtime (statically
// linked, so the library loads on machines with no driver); built without
// (no_cuda.cpp) every answer says so.
#pragma once
#include <string>

#include "cuda/staged_upload.hpp"

namespace tppp {

bool cuda_built();
// Number of visible CUDA devices; 0 with *why filled when none can be used.
int cuda_device_count(std::string* why);
// Throws NOT_SUPPORTED (no CUDA, no device) or INVALID_ARGUMENT (ordinal too
// large), naming the reason, unless CUDA device `ordinal` exists.
void check_cuda_device(int ordinal);

// Host-to-device upload through pinned staging buffers, for the loader:
// `fill(staging, bytes)` writes the next piece of the source into pinned
// memory; the piece is then copied to dst + offset on `stream` (a
// cudaStream_t) while the next piece is being filled. Returns once every copy
// has completed. Throws NOT_SUPPORTED without CUDA, CUDA on a CUDA error.
struct UploadPiece {
  size_t bytes;
  char* dst;  // device address
  const void* key;  // passed back to fill
};
void upload_pieces(const UploadPiece* pieces, size_t n, void* stream,
                   void (*fill)(const void* key, void* staging, size_t bytes, void* user), void* user);
// The rank-wide load into device memory: staged_upload (cuda/staged_upload.hpp)
// with CUDA's engine, `lanes` non-blocking copy streams on `device`, each
// wait bounded by timeout_ms. Returns once every copy has completed.
void device_staged_upload(int device, const UploadJob* jobs, size_t n, int lanes, int timeout_ms,
                          const std::function<void(size_t job, void* staging)>& fill, const std::atomic<int>* cancel,
                          std::atomic<uint64_t>* done_bytes);
// cudaMalloc / cudaFree on `device` (one allocation per rank for its weights).
void* device_alloc(int device, size_t bytes);
void device_free(int device, void* p) noexcept;
// cudaMemsetAsync(dst, 0, n, stream); NOT_SUPPORTED without CUDA.
void device_zero(void* dst, size_t n, void* stream);
// "<boot id>/<PCI bus id>" of a CUDA device: equal for two ranks exactly when
// they share one GPU ("" without CUDA).
std::string cuda_device_identity(int ordinal);
// Is this a device pointer the CUDA runtime knows (false without CUDA)? Only
// the C shims ask, for raw pointers a host passes without a memory kind;
// inside the library the kind travels with the buffer (transport::Place).
bool is_device_pointer(const void* p);

}  // namespace tppp
