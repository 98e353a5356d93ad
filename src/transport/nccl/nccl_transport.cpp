// NcclTransport (see the header).
#include "transport/nccl/nccl_transport.hpp"

#include <cuda_runtime_api.h>

#include <chrono>
#include <cstring>

#include "cuda/cuda_check.hpp"
#include "core/bootstrap.hpp"
#include "core/dtype.hpp"
#include "core/error.hpp"
#include "core/log.hpp"

namespace tppp {
namespace {

using Clock = std::chrono::steady_clock;


ncclDataType_t nccl_type(int32_t dt) {
  switch (dt) {
    case TPPP_DTYPE_F32: return ncclFloat32;
    case TPPP_DTYPE_F16: return ncclFloat16;
    case TPPP_DTYPE_BF16: return ncclBfloat16;
    case TPPP_DTYPE_I8: return ncclInt8;
    case TPPP_DTYPE_U8: return ncclUint8;
    case TPPP_DTYPE_I32: return ncclInt32;
    case TPPP_DTYPE_I64: return ncclInt64;
    default: fail(TPPP_ERR_INVALID_ARGUMENT, "nccl: dtype %s cannot be reduced or gathered", dtype_name(dt));
  }
}

ncclRedOp_t nccl_op(int32_t op) {
  switch (op) {
    case TPPP_OP_SUM: return ncclSum;
    case TPPP_OP_MAX: return ncclMax;
    case TPPP_OP_MIN: return ncclMin;
    default: fail(TPPP_ERR_INVALID_ARGUMENT, "nccl: reduction op %d is not TPPP_OP_SUM, _MAX or _MIN", op);
  }
}

// Polls a non-blocking communicator until its pending call finished: TIMEOUT
// past timeout_ms (a rank never arrived?), ABORTED once the group is aborted.
void settle(ncclComm_t cm, const char* what, int timeout_ms, const std::atomic<int>* abort_flag) {
  const std::string name = strf("nccl: %s", what);
  poll_until_done(
      [&] {
        ncclResult_t st = ncclInProgress;
        const ncclResult_t r = ncclCommGetAsyncError(cm, &st);
        if (r != ncclSuccess) st = r;
        if (st == ncclSuccess) return Poll::Done;
        if (st != ncclInProgress)
          fail(st == ncclRemoteError ? TPPP_ERR_REMOTE : TPPP_ERR_NCCL, "%s: %s (%s)", name.c_str(),
               ncclGetErrorString(st), ncclGetLastError(cm));
        if (abort_flag && abort_flag->load()) fail(TPPP_ERR_ABORTED, "%s: the group was aborted", name.c_str());
        return Poll::Pending;
      },
      timeout_ms, name.c_str());
}

ncclConfig_t nonblocking_config() {
  ncclConfig_t c = NCCL_CONFIG_INITIALIZER;
  c.blocking = 0;
  return c;
}

class NcclRequest final : public Request {
 public:
  NcclRequest(NcclTransport* t, void* ev, const char* what) : t_(t), ev_(ev), what_(what) {}
  ~NcclRequest() override {
    if (ev_) cudaEventDestroy(static_cast<cudaEvent_t>(ev_));
  }
  bool test() override { return !ev_ || t_->test_event(ev_, what_); }
  void wait() override {
    if (ev_) t_->wait_event(ev_, what_);
  }

 private:
  NcclTransport* t_;
  void* ev_;  // cudaEvent_t recorded after the op; null when captured in a graph
  const char* what_;
};

// A request completing with the op just queued on stream. It holds its own
// event (the watchdog's goes back to its pool); none inside a graph capture.
RequestPtr request_after(NcclTransport* t, void* watched, void* stream, const char* what) {
  cudaEvent_t own = nullptr;
  if (watched) {
    check_cuda(cudaEventCreateWithFlags(&own, cudaEventDisableTiming), "nccl: cudaEventCreate");
    check_cuda(cudaEventRecord(own, as_stream(stream)), "nccl: cudaEventRecord");
  }
  return RequestPtr(new NcclRequest(t, own, what));
}

}  // namespace

NcclTransport::NcclTransport(Bootstrap& bs, const TransportConfig& cfg) : cfg_(cfg) {
  check_cuda(cudaSetDevice(cfg.device), "nccl: cudaSetDevice");
  ncclUniqueId id{};
  std::string blob;
  if (cfg.rank == 0) {
    ncclResult_t r = ncclGetUniqueId(&id);
    if (r != ncclSuccess) fail(TPPP_ERR_NCCL, "nccl: ncclGetUniqueId: %s", ncclGetErrorString(r));
    blob.assign(reinterpret_cast<const char*>(&id), sizeof id);
  }
  blob = bs.broadcast(blob);
  if (blob.size() != sizeof id) fail(TPPP_ERR_NCCL, "nccl: the unique id from rank 0 has %zu bytes", blob.size());
  std::memcpy(&id, blob.data(), sizeof id);
  const std::atomic<int>* ab = cfg.abort_flag.get();
  try {
    ncclConfig_t c = nonblocking_config();
    ncclResult_t r = ncclCommInitRankConfig(&world_, cfg.world, id, cfg.rank, &c);
    if (r != ncclSuccess && r != ncclInProgress)
      fail(TPPP_ERR_NCCL, "nccl: ncclCommInitRankConfig (rank %d of %d): %s", cfg.rank, cfg.world,
           ncclGetErrorString(r));
    settle(world_, "communicator initialisation", cfg.timeout_ms, ab);
    const int tp_rank = cfg.rank % cfg.tp, pp_rank = cfg.rank / cfg.tp;
    ncclConfig_t c2 = nonblocking_config();
    r = ncclCommSplit(world_, pp_rank, tp_rank, &tp_, &c2);  // same stage -> one TP communicator
    if (r != ncclSuccess && r != ncclInProgress) fail(TPPP_ERR_NCCL, "nccl: ncclCommSplit (tp): %s", ncclGetErrorString(r));
    settle(world_, "TP communicator split", cfg.timeout_ms, ab);
    settle(tp_, "TP communicator split", cfg.timeout_ms, ab);
    ncclConfig_t c3 = nonblocking_config();
    r = ncclCommSplit(world_, tp_rank, pp_rank, &pp_, &c3);  // same TP rank -> one PP communicator
    if (r != ncclSuccess && r != ncclInProgress) fail(TPPP_ERR_NCCL, "nccl: ncclCommSplit (pp): %s", ncclGetErrorString(r));
    settle(world_, "PP communicator split", cfg.timeout_ms, ab);
    settle(pp_, "PP communicator split", cfg.timeout_ms, ab);
    check_cuda(cudaMalloc(&barrier_buf_, sizeof(int32_t)), "nccl: cudaMalloc of the barrier word");
    cudaStream_t bs_stream = nullptr;
    check_cuda(cudaStreamCreateWithFlags(&bs_stream, cudaStreamNonBlocking), "nccl: cudaStreamCreate");
    barrier_stream_ = bs_stream;
  } catch (...) {
    abort_comms();
    if (barrier_buf_) cudaFree(barrier_buf_);
    if (barrier_stream_) cudaStreamDestroy(as_stream(barrier_stream_));
    throw;
  }
  watchdog_ = std::thread([this] { watchdog(); });
  TPPP_LOG(TPPP_LOG_DEBUG, "nccl: rank %d of %d on device %d (tp %d, pp %d)", cfg.rank, cfg.world, cfg.device, cfg.tp,
           cfg.pp);
}

NcclTransport::~NcclTransport() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (watchdog_.joinable()) watchdog_.join();
  cudaSetDevice(cfg_.device);
  bool clean = false;
  {
    std::lock_guard<std::mutex> lk(abort_mu_);
    clean = !comms_aborted_;
  }
  if (clean) {  // flush and destroy; anything stuck past the timeout is aborted instead
    try {
      for (ncclComm_t* cm : {&pp_, &tp_, &world_}) {
        ncclCommFinalize(*cm);
        settle(*cm, "communicator finalize", cfg_.timeout_ms, nullptr);
        ncclCommDestroy(*cm);
        *cm = nullptr;
      }
    } catch (const Error& e) {
      TPPP_LOG(TPPP_LOG_WARN, "%s; aborting the communicators", e.what());
      abort_comms();
    }
  }
  for (void* e : spare_events_) cudaEventDestroy(static_cast<cudaEvent_t>(e));
  for (auto& w : watched_) cudaEventDestroy(static_cast<cudaEvent_t>(w.ev));
  if (barrier_buf_) cudaFree(barrier_buf_);
  if (barrier_stream_) cudaStreamDestroy(as_stream(barrier_stream_));
}

void NcclTransport::abort_comms() noexcept {
  std::lock_guard<std::mutex> lk(abort_mu_);
  if (comms_aborted_) return;
  comms_aborted_ = true;
  for (ncclComm_t* cm : {&pp_, &tp_, &world_})
    if (*cm) {
      ncclCommAbort(*cm);
      *cm = nullptr;
    }
}

void NcclTransport::fail_async(tppp_status st, const std::string& msg) noexcept {
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (async_status_ == TPPP_OK) {
      async_status_ = st;
      async_msg_ = msg;
    }
  }
  TPPP_LOG(TPPP_LOG_ERROR, "%s", msg.c_str());
  abort_comms();
}

void NcclTransport::abort() noexcept {
  fail_async(TPPP_ERR_ABORTED, "nccl: the group was aborted (tppp_group_abort)");
}

tppp_status NcclTransport::async_error(std::string* msg) const {
  std::lock_guard<std::mutex> lk(mu_);
  if (msg) *msg = async_msg_;
  return async_status_;
}

void NcclTransport::check_usable(const char* op) const {
  std::lock_guard<std::mutex> lk(mu_);
  if (async_status_ != TPPP_OK) fail(async_status_, "nccl: %s on a failed group: %s", op, async_msg_.c_str());
  if (cfg_.abort_flag && cfg_.abort_flag->load()) fail(TPPP_ERR_ABORTED, "nccl: %s on an aborted group", op);
}

ncclComm_t NcclTransport::comm_for(const Comm& c, const char* op) {
  check_usable(op);
  ncclComm_t cm = nullptr;
  switch (c.id) {
    case CommId::World: cm = world_; break;
    case CommId::Tp: cm = tp_; break;
    case CommId::Pp: cm = pp_; break;
  }
  if (!cm)
    fail(TPPP_ERR_INVALID_ARGUMENT, "nccl: %s on communicator '%s' (id %d), which NCCL does not have", op, c.name,
         static_cast<int>(c.id));
  check_cuda(cudaSetDevice(cfg_.device), "nccl: cudaSetDevice");
  return cm;
}

void NcclTransport::enqueued(ncclComm_t cm, ncclResult_t r, const char* op, const Comm& c) {
  if (r == ncclInProgress) {
    try {
      settle(cm, op, cfg_.timeout_ms, cfg_.abort_flag.get());
    } catch (const Error& e) {
      fail_async(e.status(), e.what());
      throw;
    }
    return;
  }
  if (r != ncclSuccess)
    fail(r == ncclInvalidArgument || r == ncclInvalidUsage ? TPPP_ERR_INVALID_ARGUMENT : TPPP_ERR_NCCL,
         "nccl: %s on '%s' (rank %d of %d): %s (%s)", op, c.name, c.me, c.size(), ncclGetErrorString(r),
         ncclGetLastError(cm));
}

void* NcclTransport::watch(void* stream, const std::string& what) {
  cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
  if (cudaStreamIsCapturing(as_stream(stream), &cs) != cudaSuccess || cs != cudaStreamCaptureStatusNone) {
    cudaGetLastError();
    return nullptr;  // part of a graph: watched when the graph runs (by the caller's sync)
  }
  cudaEvent_t ev = nullptr;
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (!spare_events_.empty()) {
      ev = static_cast<cudaEvent_t>(spare_events_.back());
      spare_events_.pop_back();
    }
  }
  if (!ev) check_cuda(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming), "nccl: cudaEventCreate");
  check_cuda(cudaEventRecord(ev, as_stream(stream)), "nccl: cudaEventRecord");
  {
    std::lock_guard<std::mutex> lk(mu_);
    watched_.push_back(Watched{ev, Clock::now() + std::chrono::milliseconds(cfg_.timeout_ms), what});
  }
  cv_.notify_all();
  return ev;
}

void NcclTransport::watchdog() {
  cudaSetDevice(cfg_.device);
  // This thread's event queries must not invalidate a capture another thread
  // runs in global mode (torch.cuda.graph's default): whether a call is
  // refused during someone's capture depends on the calling thread's mode.
  cudaStreamCaptureMode mode = cudaStreamCaptureModeThreadLocal;
  cudaThreadExchangeStreamCaptureMode(&mode);
  std::unique_lock<std::mutex> lk(mu_);
  while (!stop_) {
    cv_.wait_for(lk, std::chrono::milliseconds(watched_.empty() ? 100 : 1));
    if (stop_) break;
    // Completed ops (in order; later ones finish after earlier ones on one stream).
    while (!watched_.empty()) {
      Watched& w = watched_.front();
      cudaError_t q = cudaEventQuery(static_cast<cudaEvent_t>(w.ev));
      if (q == cudaErrorNotReady) {
        if (Clock::now() > w.deadline && async_status_ == TPPP_OK) {
          std::string msg = strf("nccl: %s did not complete within %d ms (a peer stopped or never posted its side)",
                                 w.what.c_str(), cfg_.timeout_ms);
          lk.unlock();
          fail_async(TPPP_ERR_TIMEOUT, msg);
          lk.lock();
        }
        break;
      }
      cudaGetLastError();
      spare_events_.push_back(w.ev);
      watched_.pop_front();
    }
    // Remote failures reported by NCCL itself.
    if (async_status_ == TPPP_OK) {
      lk.unlock();
      std::string msg;
      {
        std::lock_guard<std::mutex> ak(abort_mu_);
        for (ncclComm_t cm : {world_, tp_, pp_}) {
          ncclResult_t st = ncclSuccess;
          if (cm && ncclCommGetAsyncError(cm, &st) == ncclSuccess && st != ncclSuccess && st != ncclInProgress) {
            msg = strf("nccl: asynchronous error: %s (%s)", ncclGetErrorString(st), ncclGetLastError(cm));
            break;
          }
        }
      }
      if (!msg.empty()) fail_async(TPPP_ERR_REMOTE, msg);
      lk.lock();
    }
  }
}

bool NcclTransport::test_event(void* ev, const char* what) {
  check_usable(what);
  cudaError_t q = cudaEventQuery(static_cast<cudaEvent_t>(ev));
  if (q == cudaSuccess) return true;
  if (q == cudaErrorNotReady) return false;
  check_cuda(q, what);
  return false;
}

// Spins, then yields, then sleeps (poll_until_done): a p2p on the decode path
// completes in microseconds and is not held up by a sleep's granularity.
void NcclTransport::wait_event(void* ev, const char* what) {
  try {
    poll_until_done([&] { return test_event(ev, what) ? Poll::Done : Poll::Pending; }, cfg_.timeout_ms, what);
  } catch (const Error& e) {
    if (e.status() != TPPP_ERR_TIMEOUT || async_error(nullptr) != TPPP_OK) throw;  // not our deadline
    std::string msg = strf("nccl: %s did not complete within %d ms", what, cfg_.timeout_ms);
    fail_async(TPPP_ERR_TIMEOUT, msg);
    fail(TPPP_ERR_TIMEOUT, "%s", msg.c_str());
  }
}

namespace {

// NCCL moves device memory only: the device transport routes host buffers to UCX.
void* device_stream(Place at, const char* op) {
  if (!at.device())
    fail(TPPP_ERR_INVALID_ARGUMENT, "nccl: %s of host memory (memory kind %d): NCCL moves device memory", op, at.mem);
  return at.stream;
}

}  // namespace

RequestPtr NcclTransport::isend(const Comm& c, int peer, uint32_t, const void* buf, size_t n,
                                              Place at) {
  void* stream = device_stream(at, "isend");
  ncclComm_t cm = comm_for(c, "isend");
  enqueued(cm, ncclSend(buf, n, ncclUint8, peer, cm, as_stream(stream)), "send", c);
  void* ev = watch(stream, strf("send of %zu bytes to rank %d of '%s'", n, peer, c.name));
  return request_after(this, ev, stream, "nccl send");
}

RequestPtr NcclTransport::irecv(const Comm& c, int peer, uint32_t, void* buf, size_t n, Place at) {
  void* stream = device_stream(at, "irecv");
  ncclComm_t cm = comm_for(c, "irecv");
  enqueued(cm, ncclRecv(buf, n, ncclUint8, peer, cm, as_stream(stream)), "recv", c);
  void* ev = watch(stream, strf("receive of %zu bytes from rank %d of '%s'", n, peer, c.name));
  return request_after(this, ev, stream, "nccl recv");
}

void NcclTransport::all_reduce(const Comm& c, const void* send, void* recv, size_t count, int32_t dtype, int32_t op,
                               Place at) {
  void* stream = device_stream(at, "all_reduce");
  ncclComm_t cm = comm_for(c, "all_reduce");
  enqueued(cm, ncclAllReduce(send, recv, count, nccl_type(dtype), nccl_op(op), cm, as_stream(stream)), "all_reduce", c);
  watch(stream, strf("all_reduce of %zu elements on '%s'", count, c.name));
}

void NcclTransport::all_gather(const Comm& c, const void* send, void* recv, size_t count, int32_t dtype,
                               Place at) {
  void* stream = device_stream(at, "all_gather");
  ncclComm_t cm = comm_for(c, "all_gather");
  enqueued(cm, ncclAllGather(send, recv, count, nccl_type(dtype), cm, as_stream(stream)), "all_gather", c);
  watch(stream, strf("all_gather of %zu elements on '%s'", count, c.name));
}

void NcclTransport::broadcast(const Comm& c, void* buf, size_t count, int32_t dtype, int root, Place at) {
  void* stream = device_stream(at, "broadcast");
  ncclComm_t cm = comm_for(c, "broadcast");
  enqueued(cm, ncclBroadcast(buf, buf, count, nccl_type(dtype), root, cm, as_stream(stream)), "broadcast", c);
  watch(stream, strf("broadcast of %zu elements from rank %d on '%s'", count, root, c.name));
}

void NcclTransport::barrier(const Comm& c) {
  ncclComm_t cm = comm_for(c, "barrier");
  enqueued(cm, ncclAllReduce(barrier_buf_, barrier_buf_, 1, ncclInt32, ncclSum, cm, as_stream(barrier_stream_)), "barrier", c);
  cudaEvent_t ev = nullptr;
  check_cuda(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming), "nccl: cudaEventCreate");
  check_cuda(cudaEventRecord(ev, as_stream(barrier_stream_)), "nccl: cudaEventRecord");
  try {
    wait_event(ev, "barrier");
  } catch (...) {
    cudaEventDestroy(ev);
    throw;
  }
  cudaEventDestroy(ev);
}

}  // namespace tppp
