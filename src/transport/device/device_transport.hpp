// The transport of a CUDA group: routes each operation by where its buffers
// live. Host buffers go to the UCX transport; device buffers go to NCCL when
// the group has it (one GPU per rank), else to UCX directly when UCX was
// built with CUDA support, else through pinned host staging buffers
// (device -> pinned -> UCX -> pinned -> device, synchronous with the
// caller's stream, so not capturable in a CUDA graph: that path refuses a
// capturing stream with INVALID_USAGE). This is how several ranks share one
// GPU (NCCL refuses two ranks on one device).
#pragma once
#include <memory>

#include "backend/cuda/caching_allocator.hpp"
#include "transport/transport.hpp"

namespace tppp {

class UcxTransport;

class DeviceTransport final : public Transport {
 public:
  // nccl may be null (ranks share a GPU, or NCCL was not asked for).
  DeviceTransport(std::shared_ptr<UcxTransport> ucx, std::shared_ptr<Transport> nccl, int device);
  ~DeviceTransport() override;

  const char* name() const override;
  int32_t kind() const override;
  std::unique_ptr<Request> isend(const Comm& c, int peer, uint32_t tag, const void* buf, size_t n,
                                 void* stream) override;
  std::unique_ptr<Request> irecv(const Comm& c, int peer, uint32_t tag, void* buf, size_t n, void* stream) override;
  void all_reduce(const Comm& c, const void* send, void* recv, size_t count, int32_t dtype, int32_t op,
                  void* stream) override;
  void all_gather(const Comm& c, const void* send, void* recv, size_t count, int32_t dtype, void* stream) override;
  void broadcast(const Comm& c, void* buf, size_t count, int32_t dtype, int root, void* stream) override;
  void barrier(const Comm& c) override;
  void abort() noexcept override;
  tppp_status async_error(std::string* msg) const override;

  // Pinned host staging buffers (the pool's blocks; see Pinned in the .cpp).
  CachingAllocator& pinned() { return pinned_; }

 private:
  // Ucx: host buffers, or device buffers UCX reads itself (the stream is
  // waited for first); Nccl: queued on the stream; Staged: through pinned memory.
  enum class Route { Ucx, Nccl, Staged };
  Route route(const void* a, const void* b, const char* op, void* stream) const;

  std::shared_ptr<UcxTransport> ucx_;
  std::shared_ptr<Transport> nccl_;
  bool ucx_cuda_ = false;
  int device_;
  CachingAllocator pinned_;  // cudaMallocHost blocks, reused by size
};

}  // namespace tppp
