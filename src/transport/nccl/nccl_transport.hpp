// NCCL transport: device memory, one GPU per rank. The ncclUniqueId travels
// over the group bootstrap; one world communicator, TP and PP communicators
// split from it (ncclCommSplit). Every communicator is non-blocking, so no
// call can hang: initialisation polls with the group timeout, each queued
// operation is watched (an event after it, a deadline) by a watchdog thread
// that also polls ncclCommGetAsyncError, and aborts every communicator on a
// timeout or a remote failure; the next call then fails with TIMEOUT/REMOTE.
// NCCL has no tags: p2p messages between two ranks match in posting order.
#pragma once
#include <nccl.h>

#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include "transport/transport.hpp"

namespace tppp {

class NcclTransport final : public Transport {
 public:
  NcclTransport(Bootstrap& bs, const TransportConfig& cfg);
  ~NcclTransport() override;

  const char* name() const override { return "nccl"; }
  int32_t kind() const override { return TPPP_TRANSPORT_NCCL; }
  bool moves_device_memory() const override { return true; }
  RequestPtr isend(const Comm& c, int peer, uint32_t tag, const void* buf, size_t n,
                                 Place at) override;
  RequestPtr irecv(const Comm& c, int peer, uint32_t tag, void* buf, size_t n, Place at) override;
  void all_reduce(const Comm& c, const void* send, void* recv, size_t count, int32_t dtype, int32_t op,
                  Place at) override;
  void all_gather(const Comm& c, const void* send, void* recv, size_t count, int32_t dtype, Place at) override;
  void broadcast(const Comm& c, void* buf, size_t count, int32_t dtype, int root, Place at) override;
  void barrier(const Comm& c) override;
  // NCCL has no side channel: the peers of a call this rank skips fail at their timeout.
  void collective_failed(const Comm&, tppp_status) noexcept override {}
  void abort() noexcept override;
  tppp_status async_error(std::string* msg) const override;

  // Waits (polling, with the group timeout) until `ev` has completed; throws
  // TIMEOUT / REMOTE / ABORTED. Used by requests and the barrier.
  void wait_event(void* ev, const char* what);
  bool test_event(void* ev, const char* what);

 private:
  ncclComm_t comm_for(const Comm& c, const char* op);
  void enqueued(ncclComm_t cm, ncclResult_t r, const char* op, const Comm& c);  // checks the launch result
  void* watch(void* stream, const std::string& what);  // event after the op (null while capturing)
  void check_usable(const char* op) const;
  void fail_async(tppp_status st, const std::string& msg) noexcept;  // records + aborts the communicators
  void watchdog();
  void abort_comms() noexcept;

  TransportConfig cfg_;
  ncclComm_t world_ = nullptr, tp_ = nullptr, pp_ = nullptr;
  void* barrier_buf_ = nullptr;   // int32, device
  void* barrier_stream_ = nullptr;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  struct Watched {
    void* ev;
    std::chrono::steady_clock::time_point deadline;
    std::string what;
  };
  std::deque<Watched> watched_;
  std::vector<void*> spare_events_;
  tppp_status async_status_ = TPPP_OK;
  std::string async_msg_;
  bool comms_aborted_ = false, stop_ = false;
  std::mutex abort_mu_;
  std::thread watchdog_;
};

}  // namespace tppp
