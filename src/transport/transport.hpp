// Transport: the communication seam (docs/DESIGN.md section 3). A transport
// moves bytes between the ranks of a group: async p2p plus the collectives
// the layers need. UCX implements it for host memory (transport/ucx), NCCL
// for device memory with one GPU per rank (transport/nccl), and the device
// transport routes a CUDA group's calls between them (transport/device);
// transport/registry.cpp picks one. Nothing above this header knows which
// one runs.
//
// All methods but abort() and async_error() are called from one thread at a
// time (the group's owner). Failures throw tppp::Error naming the peer and op.
//
// Every call says where its buffers live and which stream orders it (Place):
// the caller knows the memory kind, so no transport probes pointers. Host
// memory completes before the call returns. Device memory is queued on
// `stream` (a cudaStream_t; nullptr is the legacy default stream): buffers
// may be reused once the stream has passed it; a request's test/wait report
// that point.
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "c_api.h"

namespace tppp {

class Bootstrap;

// The message spaces of a group's communicators (UCX puts the id in every
// tag; NCCL keeps one communicator per id).
enum class CommId : uint8_t { World = 0, Tp = 1, Pp = 2 };
constexpr int kCommIds = 3;

// A communicator: an ordered subset of global ranks; `me` is this rank's index.
struct Comm {
  CommId id = CommId::World;
  std::vector<int> ranks;
  int me = 0;
  int size() const { return static_cast<int>(ranks.size()); }
  const char* name = "world";
};

// Where a call's buffers live and which stream orders the call.
struct Place {
  int32_t mem = TPPP_MEM_HOST;  // TPPP_MEM_HOST, _PINNED (host memory) or _CUDA
  void* stream = nullptr;       // cudaStream_t for device memory
  bool device() const { return mem == TPPP_MEM_CUDA; }
};
constexpr Place kHostPlace{};

// An async p2p operation. test() makes progress and returns true once done;
// both throw on failure (size mismatch, dead peer, abort, timeout). The
// timeout counts from the first test or wait that finds it still pending.
// Releasing it (RequestPtr's end) cancels a pending operation; a transport
// may hand out requests from a pool and take them back in release(), so
// the p2p hot path allocates nothing (UCX does).
class Request {
 public:
  virtual bool test() = 0;
  virtual void wait() = 0;
  virtual void release() noexcept { delete this; }
  // Set by a transport that knows, at no cost, that the operation finished
  // and checked out fine (UCX: a send done in place, a receive of the posted
  // length): test() and wait() would only say so, and a caller may skip
  // them (the C API's hot path). false says nothing: call them.
  bool ok = false;

 protected:
  virtual ~Request() = default;
};
struct RequestRelease {
  void operator()(Request* r) const noexcept { r->release(); }
};
using RequestPtr = std::unique_ptr<Request, RequestRelease>;

struct TransportConfig {
  int world = 1;
  int rank = 0;
  int tp = 1, pp = 1;  // the grid: device transports build TP and PP communicators up front
  int timeout_ms = 60000;
  int device = TPPP_DEVICE_CPU;
  std::shared_ptr<std::atomic<int>> abort_flag;  // set by tppp_group_abort
  std::string net_device;  // the interface toward the bootstrap root (core/netif.hpp); "" for loopback
};

class Transport {
 public:
  virtual ~Transport() = default;
  virtual const char* name() const = 0;
  virtual int32_t kind() const = 0;  // TPPP_TRANSPORT_*
  // Can it move device memory itself (NCCL; UCX built with CUDA)?
  virtual bool moves_device_memory() const = 0;
  // Are p2p operations at `at` queued on its stream and complete in stream
  // order (NCCL)? Then a consumer on that stream needs no host wait; else
  // (host memory, staging) the request's wait is what lands the data.
  virtual bool stream_ordered(Place at) const {
    (void)at;
    return false;
  }

  // peer: index in c.ranks. tag: see transport/tags.hpp. n bytes; the receive must match.
  virtual RequestPtr isend(const Comm& c, int peer, uint32_t tag, const void* buf, size_t n,
                                         Place at) = 0;
  virtual RequestPtr irecv(const Comm& c, int peer, uint32_t tag, void* buf, size_t n, Place at) = 0;

  virtual void all_reduce(const Comm& c, const void* send, void* recv, size_t count, int32_t dtype, int32_t op,
                          Place at) = 0;
  virtual void all_gather(const Comm& c, const void* send, void* recv, size_t count, int32_t dtype, Place at) = 0;
  virtual void broadcast(const Comm& c, void* buf, size_t count, int32_t dtype, int root, Place at) = 0;
  virtual void barrier(const Comm& c) = 0;
  // This rank will not make its next collective on c: it failed before any
  // byte moved (status), or it has nothing to exchange (TPPP_OK: a layer
  // forward with 0 rows). It still counts the call, and tells c's other
  // ranks, whose same call then fails (REMOTE, or INVALID_USAGE for a skip)
  // instead of pairing with this rank's next call. Best effort: transports
  // that cannot tell (NCCL) leave the peers to their timeout.
  virtual void collective_failed(const Comm& c, tppp_status status) noexcept = 0;

  // Any thread. Pending and later operations fail with ABORTED.
  virtual void abort() noexcept = 0;
  // Any thread: first asynchronous error (peer failure), else TPPP_OK.
  virtual tppp_status async_error(std::string* msg) const = 0;
};

// registry.cpp: builds the transport named by `kind` after the bootstrap has
// formed the group. CPU groups: UCX. CUDA groups: host buffers over UCX;
// device buffers over NCCL when every rank has its own GPU (AUTO or NCCL),
// else over UCX (direct if UCX has CUDA support, staged through pinned host
// memory if not). Throws NOT_SUPPORTED for a transport that is not built in,
// INVALID_ARGUMENT when ranks disagree (CPU and CUDA ranks in one group).
std::shared_ptr<Transport> create_transport(int32_t kind, Bootstrap& bs, const TransportConfig& cfg);

}  // namespace tppp
