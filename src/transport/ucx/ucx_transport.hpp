// UCX transport: host memory over UCX's tag API (shared memory, CMA, TCP,
// InfiniBand: whatever UCX_TLS allows). One ucp worker per group, one
// endpoint per peer. Collectives come from HostCollectives.
//
// Dead peers: endpoints to other hosts use error-handling mode PEER, so UCX
// fails their requests. UCX 1.13 (Debian 12) leaves shared memory and CMA
// out of PEER-mode endpoints (only TCP remains, several times slower), so
// peers on this host (same boot id and pid namespace) get mode NONE and we
// watch their pid instead: a wait on a dead local peer fails with REMOTE
// within ~100 ms. TPPP_UCX_ERR_MODE=peer forces PEER everywhere.
#pragma once
#include <ucp/api/ucp.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "transport/coll_check.hpp"
#include "transport/host_collectives.hpp"
#include "transport/shm_collectives.hpp"
#include "transport/transport.hpp"

namespace tppp {

class UcxTransport final : public Transport, private HostP2P, private ShmCollectives::Waiter {
 public:
  UcxTransport(Bootstrap& bs, const TransportConfig& cfg);
  ~UcxTransport() override;

  const char* name() const override { return "ucx"; }
  int32_t kind() const override { return TPPP_TRANSPORT_UCX; }
  // Was UCX built with CUDA memory support (then device buffers go direct)?
  bool moves_device_memory() const override;
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

  struct Op;
  // The Request a p2p call returns. It lives in its pooled Op, so a p2p call
  // allocates nothing; release() hands the Op back (cancelling it if pending).
  class OpRequest final : public Request {
   public:
    bool test() override;
    void wait() override;
    void release() noexcept override;
    Op* op = nullptr;
    // Set by the first test or wait that finds the op pending: no clock read
    // for an op that completes at once.
    std::chrono::steady_clock::time_point deadline{};
  };

  // One in-flight UCX operation. Pooled; owned by the transport. The fields
  // a p2p call writes come first, together (a few stores, two cache lines).
  struct Op {
    UcxTransport* t = nullptr;
    void* ucx_req = nullptr;  // UCX request while pending
    size_t length = 0;        // bytes received
    size_t expected = 0;      // bytes posted
    int peer = -1;            // global rank
    ucs_status_t status = UCS_OK;
    bool is_recv = false;
    bool done = false;
    bool released = false;    // the owner let go; free on completion
    bool coll = false;        // a collective message: a CollHeader, then the data
    bool inline_data = false;
    bool delivered = false;   // done and checked (an inline receive: copied out to `user`)
    const char* what = "";    // op name for messages
    OpRequest req;            // p2p: what isend/irecv hand out
    void* user = nullptr;     // inline receive: where the data goes
    CollHeader hdr{};         // collective: the header sent, or received
    ucp_dt_iov_t iov[2]{};    // collective, large: [hdr, data] while in flight
    // Collective, small: [hdr | data] copied here, one contiguous message
    // (UCX's IOV path costs ~0.1 us a message; a copy of a few KiB less).
    static constexpr size_t kInlineData = 2048;
    alignas(8) char inline_buf[sizeof(CollHeader) + kInlineData];
  };

  // A p2p op that completed as posted: nothing left to check (the hot path
  // of test, wait and release: inline, no progress call, no clock read).
  // Kept in req.ok (Request), which the C API reads without a virtual call.
  static bool settled_ok(const Op* op) {
    return op->done && op->status == UCS_OK && !op->coll && (!op->is_recv || op->length == op->expected);
  }

  // Progress until op completes; throws on error, abort, dead peer or
  // deadline. *deadline is set (now + timeout) by the first round that finds
  // the op pending, when still unset (a zero time_point).
  void wait_op(Op* op, std::chrono::steady_clock::time_point* deadline);
  // One progress round; throws for abort. Returns true if op is done (and OK).
  bool test_op(Op* op, std::chrono::steady_clock::time_point* deadline);
  void release_op(Op* op);  // cancels if pending; one touching the caller's memory waits in unsettled_
  void settle_released() noexcept;
  int timeout_ms() const { return cfg_.timeout_ms; }

 private:
  // HostP2P
  Id coll_send(const Comm& c, int peer, uint64_t step, const void* buf, size_t n) override;
  Id coll_recv(const Comm& c, int peer, uint64_t step, void* buf, size_t n) override;
  void coll_wait(Id id) override;
  void coll_wait_all() override;
  void coll_begin(const Comm& c, const char* op, const CollCall& call) override;
  void coll_end() override;
  uint64_t host_of(int global_rank) const override { return peers_[static_cast<size_t>(global_rank)]->host; }
  void begin_call(const Comm& c, const char* op, const CollCall& call, bool announce);
  // ShmCollectives::Waiter
  void shm_slow_path(const Comm& c, int peer) override;
  const Comm* shm_comm(const Comm& c);  // the comm shared memory serves for c, or null (ucx_collectives.cpp)

  void shutdown() noexcept;  // idempotent; the destructor and a failed constructor
  void drain_unexpected(std::chrono::steady_clock::time_point deadline) noexcept;
  // Receives the probed message m into buf[n] and waits for it until deadline
  // (then cancels it); true when it arrived.
  bool recv_probed(ucp_tag_message_h m, void* buf, size_t n, std::chrono::steady_clock::time_point deadline) noexcept;
  // hdr: a collective message (the header goes first, in the same message).
  Op* post_send(int peer_global, uint64_t tag, const void* buf, size_t n, const char* what,
                const CollHeader* hdr = nullptr);
  Op* post_recv(int peer_global, uint64_t tag, void* buf, size_t n, const char* what, bool coll = false);
  // Notices (a failed or skipped call) from the current collective's peers:
  // throws for one about this call; polled only while waiting.
  void poll_notices();
  bool take_notice(const Comm& c, CollHeader* n, int* src);
  void poll_other_roots();
  // call: the fingerprint of the call this rank failed (null: it made none).
  void send_notices(const Comm& c, uint32_t seq, tppp_status status, const CollHeader* call = nullptr) noexcept;
  // Runs a host collective; on failure tells the call's other ranks.
  template <typename F>
  void collective(const Comm& c, F&& run);
  Op* new_op();
  Op* take_op(int peer, size_t n, bool is_recv);          // p2p: see ucx_p2p.cpp
  RequestPtr posted(Op* op, ucs_status_ptr_t sp);
  __attribute__((noinline)) void grow_ops();
  void free_op(Op* op);
  void check_op(Op* op);  // throws if op completed with an error
  [[noreturn]] void throw_aborted(const char* what) const;
  // The 64-bit UCX tag (layout atop ucx_transport.cpp). Inline: every p2p call makes one.
  uint64_t make_tag(bool coll, const Comm& c, int src_global, uint64_t low) const {
    return (static_cast<uint64_t>(coll) << 63) | (static_cast<uint64_t>(c.id) << 56) |
           (static_cast<uint64_t>(src_global & 0xffff) << 40) | (low & 0xffffffffffull);
  }
  static void send_cb(void* request, ucs_status_t status, void* user);
  static void recv_cb(void* request, ucs_status_t status, const ucp_tag_recv_info_t* info, void* user);
  static void ep_error_cb(void* arg, ucp_ep_h ep, ucs_status_t status);

  TransportConfig cfg_;
  ucp_context_h ctx_ = nullptr;
  ucp_worker_h worker_ = nullptr;
  std::vector<ucp_ep_h> eps_;  // by global rank
  struct Peer {
    UcxTransport* t;
    int rank;
    std::atomic<int> failed{0};  // ucs_status_t of the failure, 0 = alive
    int pid = 0;                 // watched when local
    bool local = false;          // same host and pid namespace
    uint64_t host = 0;           // host_key() of its host (same kernel, pid namespace and name)
    std::string host_name;       // for messages: "rank 3 (pid 812 on gpu-node-2)"
  };
  bool peer_dead(int rank);
  std::string who(int rank) const;  // "pid 812 on host gpu-node-2"      // polls a local peer's pid, rate-limited
  // A receiver ahead of a one-way stream from a peer on this host steps
  // back before it polls (TPPP_UCX_STREAM_BACKOFF_NS; why: ucx_p2p.cpp).
  void stream_backoff(const Op* op) const;
  std::chrono::nanoseconds stream_backoff_{0};  // TPPP_UCX_STREAM_BACKOFF_NS
  uint64_t sends_ = 0;          // sends posted, p2p and collective
  uint64_t sends_at_recv_ = 0;  // sends_ when a p2p receive last finished: equal = one-way
  std::chrono::steady_clock::time_point next_liveness_check_{};
  bool oversubscribed_ = false;  // more ranks on this host than CPUs: waits yield at once
  bool contended_ = false;       // a yield gave the CPU away: idle polls yield sooner until contended_until_
  std::chrono::steady_clock::time_point contended_until_{};
  std::vector<std::unique_ptr<Peer>> peers_;
  std::vector<Op*> free_ops_;
  // irecv probes for the message first only while that pays: a receiver
  // behind its sender finds it (and completes in place); one ahead would
  // only search an empty unexpected queue twice. See ucx_p2p.cpp.
  bool probe_first_ = true;
  std::vector<Op*> unsettled_;  // released while pending, on the caller's memory: see settle_released
  std::chrono::steady_clock::time_point settle_window_end_{};
  std::vector<std::unique_ptr<Op>> all_ops_;
  mutable std::mutex err_mu_;
  tppp_status async_status_ = TPPP_OK;
  std::string async_msg_;

  // State of the collective in progress.
  HostCollectives coll_;
  const Comm* coll_comm_ = nullptr;
  const char* coll_name_ = "";
  uint64_t coll_seq_[kCommIds] = {0};  // calls so far per communicator id (headers carry 32 bits, tags 8)
  std::unique_ptr<ShmCollectives> shm_;  // all_reduce between the processes of this host
  int8_t shm_comm_[kCommIds] = {-1, -1, -1};  // per comm id, once known: shm_comm's answer (0 null, 1 c, 2 local)
  CollHeader coll_hdr_{};              // the call in progress
  struct Notice {
    CommId comm;
    uint32_t seq;
    int src;
    CollHeader hdr;  // the sender's: its status, and its call (kind 0: none)
  };
  std::vector<Notice> early_notices_;  // about calls this rank has not reached yet
  std::vector<Op*> coll_ops_;
  std::chrono::steady_clock::time_point coll_deadline_;  // zero until a wait of this call finds an op pending
};

}  // namespace tppp
