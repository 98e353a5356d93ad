// DeviceTransport (see the header).
#include "transport/device/device_transport.hpp"

#include <cuda_runtime_api.h>

#include <exception>
#include <memory>

#include "core/dtype.hpp"
#include "core/error.hpp"
#include "cuda/cuda_check.hpp"

namespace tppp {
namespace {


// A pinned staging buffer borrowed from the pool for one scope. Left by an
// exception (a copy that timed out may still land in it later) or marked
// stale, it is never reused nor freed: a small leak instead of a late DMA
// into a buffer someone else holds.
class Pinned {
 public:
  Pinned(DeviceTransport& t, size_t n)
      : pool_(t.pinned()), p_(pool_.alloc(n)), exceptions_(std::uncaught_exceptions()) {}
  ~Pinned() {
    if (stale || std::uncaught_exceptions() > exceptions_)
      pool_.forget(p_);
    else
      pool_.free(p_);
  }
  char* get() const { return static_cast<char*>(p_); }
  bool stale = false;

 private:
  CachingAllocator& pool_;
  void* p_;
  int exceptions_;
};

// Stream-ordered copies through the pinned buffer, waited for with the
// transport's deadline (the stream may hold work queued before them).
void d2h(void* dst, const void* src, size_t n, void* stream, int timeout_ms) {
  check_cuda(cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToHost, as_stream(stream)), "staging: device-to-host copy");
  wait_stream(as_stream(stream), timeout_ms, "staging: waiting for the device-to-host copy");
}
void h2d(void* dst, const void* src, size_t n, void* stream, int timeout_ms) {
  check_cuda(cudaMemcpyAsync(dst, src, n, cudaMemcpyHostToDevice, as_stream(stream)), "staging: host-to-device copy");
  wait_stream(as_stream(stream), timeout_ms, "staging: waiting for the host-to-device copy");
}

class StagedSend final : public Request {
 public:
  StagedSend(DeviceTransport& t, size_t n) : buf_(t, n) {}
  Pinned buf_;                     // declared first: outlives the UCX request that reads it
  RequestPtr inner;
  bool test() override { return inner->test(); }
  void wait() override { inner->wait(); }
};

class StagedRecv final : public Request {
 public:
  StagedRecv(DeviceTransport& t, void* dst, size_t n, void* stream, int timeout_ms)
      : buf_(t, n), dst_(dst), n_(n), stream_(stream), timeout_ms_(timeout_ms) {}
  Pinned buf_;                     // declared first: outlives the UCX request that writes it
  RequestPtr inner;
  bool test() override {
    if (!inner->test()) return false;
    land();
    return true;
  }
  void wait() override {
    inner->wait();
    land();
  }

 private:
  // Queues the copy to dst once and waits for it; a failure (a timeout: the
  // copy may still land later) is kept and thrown again on every later call.
  void land() {
    if (failed_) throw *failed_;
    if (landed_) return;
    landed_ = true;
    buf_.stale = true;  // until the copy is known done
    try {
      h2d(dst_, buf_.get(), n_, stream_, timeout_ms_);
    } catch (const Error& e) {
      failed_.reset(new Error(e));
      throw;
    }
    buf_.stale = false;
  }
  void* dst_;
  size_t n_;
  void* stream_;
  int timeout_ms_;
  bool landed_ = false;
  std::unique_ptr<Error> failed_;
};

// Pinned staging blocks: the copies through them are synchronous, so a freed
// block is reusable at once (fences that have always passed).
CachingAllocator::Raw pinned_raw() {
  CachingAllocator::Raw r;
  r.alloc = [](size_t n) -> void* {
    void* p = nullptr;
    if (cudaMallocHost(&p, n) != cudaSuccess) {
      cudaGetLastError();
      return nullptr;
    }
    return p;
  };
  r.free = [](void* p) { cudaFreeHost(p); };
  r.fence = [] { return uint64_t(0); };
  r.fence_done = [](uint64_t) { return true; };
  r.fence_release = [](uint64_t) {};
  return r;
}

}  // namespace

DeviceTransport::DeviceTransport(std::shared_ptr<Transport> host, std::shared_ptr<Transport> nccl, int device,
                                 int timeout_ms)
    : host_(std::move(host)), nccl_(std::move(nccl)), host_cuda_(host_->moves_device_memory()), device_(device),
      timeout_ms_(timeout_ms), pinned_(pinned_raw(), "pinned host memory (UCX staging)") {}

DeviceTransport::~DeviceTransport() { cudaSetDevice(device_); }  // the pool frees its blocks next

const char* DeviceTransport::name() const {
  if (nccl_) return "nccl (device buffers) + ucx (host buffers)";
  return host_cuda_ ? "ucx (CUDA-aware)" : "ucx (device buffers staged through pinned host memory)";
}

int32_t DeviceTransport::kind() const { return nccl_ ? TPPP_TRANSPORT_NCCL : TPPP_TRANSPORT_UCX; }

DeviceTransport::Route DeviceTransport::route(Place at, const char* op) const {
  if (!at.device()) return Route::Host;
  if (nccl_) return Route::Nccl;
  // UCX works outside the stream: it must wait for it, which a capture cannot record.
  cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
  if (cudaStreamIsCapturing(as_stream(at.stream), &cs) == cudaSuccess && cs != cudaStreamCaptureStatusNone)
    fail(TPPP_ERR_INVALID_USAGE, "%s of device buffers over UCX waits for the stream, so it cannot be captured in a "
         "CUDA graph (use NCCL with one GPU per rank, or TP = 1)", op);
  cudaGetLastError();
  check_cuda(cudaSetDevice(device_), "cudaSetDevice");
  if (!host_cuda_) return Route::Staged;
  // CUDA-aware UCX reads or writes the buffers itself: the stream's earlier work on them must be done.
  wait_stream(as_stream(at.stream), timeout_ms_, "ucx: waiting for the stream before UCX touches device buffers");
  return Route::Host;
}

RequestPtr DeviceTransport::isend(const Comm& c, int peer, uint32_t tag, const void* buf, size_t n, Place at) {
  switch (route(at, "isend")) {
    case Route::Host: return host_->isend(c, peer, tag, buf, n, at);
    case Route::Nccl: return nccl_->isend(c, peer, tag, buf, n, at);
    case Route::Staged: break;
  }
  std::unique_ptr<StagedSend> r(new StagedSend(*this, n));
  d2h(r->buf_.get(), buf, n, at.stream, timeout_ms_);
  r->inner = host_->isend(c, peer, tag, r->buf_.get(), n, kHostPlace);
  return RequestPtr(r.release());
}

RequestPtr DeviceTransport::irecv(const Comm& c, int peer, uint32_t tag, void* buf, size_t n, Place at) {
  switch (route(at, "irecv")) {
    case Route::Host: return host_->irecv(c, peer, tag, buf, n, at);
    case Route::Nccl: return nccl_->irecv(c, peer, tag, buf, n, at);
    case Route::Staged: break;
  }
  std::unique_ptr<StagedRecv> r(new StagedRecv(*this, buf, n, at.stream, timeout_ms_));
  r->inner = host_->irecv(c, peer, tag, r->buf_.get(), n, kHostPlace);
  return RequestPtr(r.release());
}

void DeviceTransport::all_reduce(const Comm& c, const void* send, void* recv, size_t count, int32_t dtype, int32_t op,
                                 Place at) {
  switch (route(at, "all_reduce")) {
    case Route::Host: return host_->all_reduce(c, send, recv, count, dtype, op, at);
    case Route::Nccl: return nccl_->all_reduce(c, send, recv, count, dtype, op, at);
    case Route::Staged: break;
  }
  const size_t n = count * dtype_size(dtype);
  Pinned a(*this, n);
  d2h(a.get(), send, n, at.stream, timeout_ms_);
  host_->all_reduce(c, a.get(), a.get(), count, dtype, op, kHostPlace);
  h2d(recv, a.get(), n, at.stream, timeout_ms_);
}

void DeviceTransport::all_gather(const Comm& c, const void* send, void* recv, size_t count, int32_t dtype,
                                 Place at) {
  switch (route(at, "all_gather")) {
    case Route::Host: return host_->all_gather(c, send, recv, count, dtype, at);
    case Route::Nccl: return nccl_->all_gather(c, send, recv, count, dtype, at);
    case Route::Staged: break;
  }
  const size_t n = count * dtype_size(dtype);
  Pinned a(*this, n), b(*this, n * static_cast<size_t>(c.size()));
  d2h(a.get(), send, n, at.stream, timeout_ms_);
  host_->all_gather(c, a.get(), b.get(), count, dtype, kHostPlace);
  h2d(recv, b.get(), n * static_cast<size_t>(c.size()), at.stream, timeout_ms_);
}

void DeviceTransport::broadcast(const Comm& c, void* buf, size_t count, int32_t dtype, int root, Place at) {
  switch (route(at, "broadcast")) {
    case Route::Host: return host_->broadcast(c, buf, count, dtype, root, at);
    case Route::Nccl: return nccl_->broadcast(c, buf, count, dtype, root, at);
    case Route::Staged: break;
  }
  const size_t n = count * dtype_size(dtype);
  Pinned a(*this, n);
  if (c.me == root) d2h(a.get(), buf, n, at.stream, timeout_ms_);
  host_->broadcast(c, a.get(), count, dtype, root, kHostPlace);
  if (c.me != root) h2d(buf, a.get(), n, at.stream, timeout_ms_);
}

void DeviceTransport::barrier(const Comm& c) { host_->barrier(c); }

// Host-memory collectives run on host_; NCCL ones cannot be told (see transport.hpp).
void DeviceTransport::collective_failed(const Comm& c, tppp_status status) noexcept {
  host_->collective_failed(c, status);
}

void DeviceTransport::abort() noexcept {
  host_->abort();
  if (nccl_) nccl_->abort();
}

tppp_status DeviceTransport::async_error(std::string* msg) const {
  tppp_status s = host_->async_error(msg);
  if (s == TPPP_OK && nccl_) s = nccl_->async_error(msg);
  return s;
}

}  // namespace tppp
