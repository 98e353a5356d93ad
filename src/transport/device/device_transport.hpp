// The transport of a CUDA group: routes each operation by where its buffers
// live (the Place the caller gives; nothing is probed). Host buffers go to
// the host transport (UCX); device buffers go to NCCL when the group has it
// (one GPU per rank), else to UCX directly when UCX was built with CUDA
// support, else through pinned host staging buffers (device -> pinned -> UCX
// -> pinned -> device, synchronous with the caller's stream, so not
// capturable in a CUDA graph: that path refuses a capturing stream with
// INVALID_USAGE). This is how several ranks share one GPU (NCCL refuses two
// ranks on one device). It sees the transports it routes to only through
// the Transport interface; transport/registry.cpp builds and hands them in.
#pragma once
#include <memory>

#include "cuda/caching_allocator.hpp"
#include "transport/transport.hpp"

namespace tppp {

class DeviceTransport final : public Transport {
 public:
  // host: the UCX transport (host buffers; device buffers too when it moves
  // them itself). nccl may be null (ranks share a GPU, or NCCL was not asked
  // for). timeout_ms bounds each wait for the stream.
  DeviceTransport(std::shared_ptr<Transport> host, std::shared_ptr<Transport> nccl, int device, int timeout_ms);
  ~DeviceTransport() override;

  const char* name() const override;
  int32_t kind() const override;
  bool moves_device_memory() const override { return true; }
  bool stream_ordered(Place at) const override { return at.device() && nccl_ != nullptr; }
  RequestPtr isend(const Comm& c, int peer, uint32_t tag, const void* buf, size_t n,
                                 Place at) override;
  RequestPtr irecv(const Comm& c, int peer, uint32_t tag, void* buf, size_t n, Place at) override;
  void all_reduce(const Comm& c, const void* send, void* recv, size_t count, int32_t dtype, int32_t op,
                  Place at) override;
  void all_gather(const Comm& c, const void* send, void* recv, size_t count, int32_t dtype, Place at) override;
  void broadcast(const Comm& c, void* buf, size_t count, int32_t dtype, int root, Place at) override;
  void barrier(const Comm& c) override;
  void collective_failed(const Comm& c, tppp_status status) noexcept override;
  void abort() noexcept override;
  tppp_status async_error(std::string* msg) const override;

  // Pinned host staging buffers (the pool's blocks; see Pinned in the .cpp).
  CachingAllocator& pinned() { return pinned_; }

 private:
  // Host: host buffers, or device buffers the host transport reads itself
  // (the stream is waited for first); Nccl: queued on the stream; Staged:
  // through pinned memory.
  enum class Route { Host, Nccl, Staged };
  Route route(Place at, const char* op) const;

  std::shared_ptr<Transport> host_;
  std::shared_ptr<Transport> nccl_;
  bool host_cuda_ = false;  // host_ moves device memory itself (CUDA-aware UCX)
  int device_;
  int timeout_ms_;
  CachingAllocator pinned_;  // cudaMallocHost blocks, reused by size
};

}  // namespace tppp
