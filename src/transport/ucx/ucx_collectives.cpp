// The UCX transport's collectives: the HostP2P hooks HostCollectives drives
// (every message carries the call's CollHeader, transport/coll_check.hpp),
// and the notices that tell a call's other ranks this rank failed or skipped
// it, so they fail the same call instead of pairing with the next one.
#include <algorithm>
#include <chrono>
#include <cstring>
#include <vector>

#include "core/dtype.hpp"
#include "core/error.hpp"
#include "transport/ucx/ucx_transport.hpp"

namespace tppp {

using std::chrono::steady_clock;

namespace {
// What a peer's notice about this call says of it: its own call when it
// names one (a mismatch then reads as one), else this call with its status.
CollHeader as_told(const CollHeader& mine, const CollHeader& notice) {
  if (notice.kind != 0) return notice;
  CollHeader h = mine;
  h.status = notice.status;
  return h;
}
}  // namespace

// ---- collectives: HostCollectives drives these HostP2P hooks.

void UcxTransport::coll_begin(const Comm& c, const char* op, const CollCall& call) { begin_call(c, op, call, true); }

// announce: in shared memory, for the peers' slow path (a shared-memory
// all_reduce need not: its header is in its slot, which they read too).
void UcxTransport::begin_call(const Comm& c, const char* op, const CollCall& call, bool announce) {
  if (cfg_.abort_flag && cfg_.abort_flag->load()) throw_aborted(op);
  coll_comm_ = &c;
  coll_name_ = op;
  const uint64_t seq = ++coll_seq_[static_cast<size_t>(c.id)];
  coll_hdr_ = make_header(static_cast<uint32_t>(seq), call);
  if (announce)
    if (const Comm* sc = shm_comm(c)) shm_->announce(*sc, seq, coll_hdr_);
  coll_deadline_ = {};  // set by the first wait that finds an op pending
  // A peer that failed this call before this rank reached it.
  for (size_t i = 0; i < early_notices_.size(); i++) {
    const Notice n = early_notices_[i];
    if (n.comm != c.id || n.seq != coll_hdr_.seq) continue;
    early_notices_.erase(early_notices_.begin() + static_cast<std::ptrdiff_t>(i));
    check_header(coll_hdr_, as_told(coll_hdr_, n.hdr), cfg_.rank, n.src, c.name);
    fail(TPPP_ERR_INVALID_USAGE, "rank %d: %s on '%s' (call #%u): rank %d made no such call (it skipped it, e.g. a "
         "layer forward with 0 rows)", cfg_.rank, describe(coll_hdr_).c_str(), c.name, coll_hdr_.seq, n.src);
  }
}

void UcxTransport::coll_end() {
  for (Op* op : coll_ops_) release_op(op);  // a failed call's pending ones settle in collective()
  coll_ops_.clear();
  coll_comm_ = nullptr;
}

HostP2P::Id UcxTransport::coll_send(const Comm& c, int peer, uint64_t step, const void* buf, size_t n) {
  uint64_t low = (static_cast<uint64_t>(coll_hdr_.seq & 0xff) << 32) | (step & 0xffffffffull);
  coll_ops_.push_back(post_send(c.ranks[static_cast<size_t>(peer)], make_tag(true, c, cfg_.rank, low), buf, n,
                                coll_name_, &coll_hdr_));
  return coll_ops_.size() - 1;
}

HostP2P::Id UcxTransport::coll_recv(const Comm& c, int peer, uint64_t step, void* buf, size_t n) {
  int src = c.ranks[static_cast<size_t>(peer)];
  uint64_t low = (static_cast<uint64_t>(coll_hdr_.seq & 0xff) << 32) | (step & 0xffffffffull);
  coll_ops_.push_back(post_recv(src, make_tag(true, c, src, low), buf, n, coll_name_, true));
  return coll_ops_.size() - 1;
}

void UcxTransport::coll_wait(Id id) { wait_op(coll_ops_[id], &coll_deadline_); }

void UcxTransport::coll_wait_all() {
  for (Op* op : coll_ops_)
    if (!op->delivered) wait_op(op, &coll_deadline_);
}

// ---- the collectives: a failure (here, or a peer's) is told to the call's other ranks.

template <typename F>
void UcxTransport::collective(const Comm& c, F&& run) {
  const uint64_t before = coll_seq_[static_cast<size_t>(c.id)];
  try {
    run();
  } catch (const Error& e) {
    // Only for a call that began (a notice names its number); a peer that
    // failed it already told the others.
    const uint64_t seq = coll_seq_[static_cast<size_t>(c.id)];
    if (seq != before) send_notices(c, static_cast<uint32_t>(seq), e.status(), &coll_hdr_);
    settle_released();  // after the notices: the peers learn of the failure first
    throw;
  }
}

namespace {
// The step between a hierarchical all_reduce's local phases in shared memory.
struct AcrossHosts final : ShmCollectives::Cross {
  AcrossHosts(HostCollectives& coll, const Comm& cross, int32_t dtype, int32_t op)
      : coll(coll), cross(cross), dtype(dtype), op(op) {}
  void across(char* data, size_t count) override { coll.all_reduce_across(cross, data, count, dtype, op); }
  HostCollectives& coll;
  const Comm& cross;
  int32_t dtype, op;
};
}  // namespace

// Through shared memory where c's ranks share this host; where c spans
// hosts hierarchically and is past the small size, its local phases go
// through shared memory around the exchange across hosts; else messages.
void UcxTransport::all_reduce(const Comm& c, const void* send, void* recv, size_t count, int32_t dtype, int32_t op,
                              Place) {
  const Comm* sc = shm_comm(c);
  const Comm *local = nullptr, *cross = nullptr;
  if (sc && sc != &c &&
      (count * dtype_size(dtype) <= coll_.tuning().allreduce_small_bytes || !coll_.hierarchical(c, &local, &cross)))
    sc = nullptr;
  if (!sc) {
    collective(c, [&] { coll_.all_reduce(c, send, recv, count, dtype, op); });
    return;
  }
  collective(c, [&] {
    begin_call(c, "all_reduce", CollCall{CollKind::AllReduce, dtype, op, 0, count}, false);
    try {
      AcrossHosts hosts(coll_, cross ? *cross : c, dtype, op);
      shm_->all_reduce(*sc, coll_seq_[static_cast<size_t>(c.id)], coll_hdr_, send, recv, count, dtype, op, *this,
                       cross ? &hosts : nullptr);
      coll_wait_all();
    } catch (...) {
      coll_end();
      throw;
    }
    coll_end();
  });
}

// c itself when all its ranks share this host (and its segments are
// mapped); its part on this host when c spans hosts hierarchically and that
// part is mapped; else null. Known once per communicator id.
const Comm* UcxTransport::shm_comm(const Comm& c) {
  int8_t& s = shm_comm_[static_cast<size_t>(c.id)];
  const Comm *local = nullptr, *cross = nullptr;
  if (s < 0) {
    s = 0;
    if (shm_ && shm_->usable(c))
      s = 1;
    else if (shm_ && coll_.hierarchical(c, &local, &cross) && shm_->usable(*local))
      s = 2;
  }
  if (s == 1) return &c;
  if (s == 2 && coll_.hierarchical(c, &local, &cross)) return local;
  return nullptr;
}

// While a shared-memory wait spins: what a UCX wait checks on its slow path.
void UcxTransport::shm_slow_path(const Comm& c, int peer) {
  if (cfg_.abort_flag && cfg_.abort_flag->load()) throw_aborted(coll_name_);
  ucp_worker_progress(worker_);
  const int g = c.ranks[static_cast<size_t>(peer)];
  if (peer_dead(g))
    fail(TPPP_ERR_REMOTE, "rank %d: %s on '%s' (call #%u): rank %d is dead (%s: process gone or its connection failed)",
         cfg_.rank, coll_name_, c.name, coll_hdr_.seq, g, who(g).c_str());
  const auto now = steady_clock::now();
  if (coll_deadline_ == steady_clock::time_point{})
    coll_deadline_ = now + std::chrono::milliseconds(cfg_.timeout_ms);
  else if (now > coll_deadline_)
    fail(TPPP_ERR_TIMEOUT, "rank %d: %s on '%s' (call #%u) from rank %d (%s) timed out after %d ms (peer not "
         "posting, stuck or dead)", cfg_.rank, coll_name_, c.name, coll_hdr_.seq, g, who(g).c_str(), cfg_.timeout_ms);
  poll_notices();
}

void UcxTransport::all_gather(const Comm& c, const void* send, void* recv, size_t count, int32_t dtype, Place) {
  collective(c, [&] { coll_.all_gather(c, send, recv, count, dtype); });
}

void UcxTransport::broadcast(const Comm& c, void* buf, size_t count, int32_t dtype, int root, Place) {
  collective(c, [&] { coll_.broadcast(c, buf, count, dtype, root); });
}

void UcxTransport::barrier(const Comm& c) {
  collective(c, [&] { coll_.barrier(c); });
}

// ---- notices: a call a rank failed (status) or skipped (TPPP_OK) without
// its data messages. One small message to every other rank of the comm,
// tagged with the reserved step kNoticeStep; a rank waiting in a collective
// probes for them on its slow path only.

namespace {
constexpr uint64_t kNoticeStep = 0xffffffffull;
constexpr uint64_t kNoticeMask = (1ull << 63) | (0x7full << 56) | 0xffffffffull;  // any source, any seq
}  // namespace

void UcxTransport::send_notices(const Comm& c, uint32_t seq, tppp_status status, const CollHeader* call) noexcept {
  CollHeader n = call ? *call : CollHeader();  // kind 0: this rank made no such call
  n.seq = seq;
  n.status = status;
  const uint64_t low = (static_cast<uint64_t>(seq & 0xff) << 32) | kNoticeStep;
  for (int p = 0; p < c.size(); p++) {
    if (p == c.me) continue;
    try {
      release_op(post_send(c.ranks[static_cast<size_t>(p)], make_tag(true, c, cfg_.rank, low), nullptr, 0,
                           "collective notice", &n));
    } catch (...) {  // an aborted or dead group: the peers learn it otherwise
    }
  }
}

void UcxTransport::collective_failed(const Comm& c, tppp_status status) noexcept {
  if (c.size() == 1) return;
  // Notices already queued for this comm are about calls this rank has now
  // passed (every rank of a group skipping the same call sends some that
  // nobody waits for): take them here, off the fast path, so they cannot
  // pile up.
  const uint64_t seq64 = ++coll_seq_[static_cast<size_t>(c.id)];  // this rank's count moves on, as its peers' do
  const uint32_t seq = static_cast<uint32_t>(seq64);
  // Told through shared memory too: a peer there sees this rank past the call.
  if (const Comm* sc = shm_comm(c)) {
    CollHeader none;  // kind 0: no call, which check_announced passes over
    none.seq = seq;
    none.status = status;
    shm_->announce(*sc, seq64, none);
  }
  try {
    CollHeader n;
    int src = 0;
    while (take_notice(c, &n, &src))
      if (static_cast<int32_t>(n.seq - seq) > 0) early_notices_.push_back(Notice{c.id, n.seq, src, n});
  } catch (...) {
  }
  early_notices_.erase(std::remove_if(early_notices_.begin(), early_notices_.end(),
                                      [&](const Notice& e) {
                                        return e.comm == c.id && static_cast<int32_t>(e.seq - seq) <= 0;
                                      }),
                       early_notices_.end());
  send_notices(c, seq, status);
}

// Receives one queued notice for c (false when there is none).
bool UcxTransport::take_notice(const Comm& c, CollHeader* n, int* src) {
  ucp_tag_recv_info_t info{};
  ucp_tag_message_h m = ucp_tag_probe_nb(worker_, make_tag(true, c, 0, kNoticeStep), kNoticeMask, 1, &info);
  if (!m) return false;
  *n = CollHeader();  // a notice that did not arrive in time reads as a skip of call 0: stale, dropped
  recv_probed(m, n, sizeof *n, steady_clock::now() + std::chrono::milliseconds(cfg_.timeout_ms));
  *src = static_cast<int>((info.sender_tag >> 40) & 0xffff);
  return true;
}

void UcxTransport::poll_notices() {
  const Comm& c = *coll_comm_;
  // A peer that announced this call number as another call (its path may
  // be shared memory while this rank's is UCX messages, or the reverse).
  if (const Comm* sc = shm_comm(c))
    shm_->check_announced(*sc, coll_seq_[static_cast<size_t>(c.id)], coll_hdr_, cfg_.rank);
  if (coll_hdr_.kind == static_cast<uint8_t>(CollKind::Broadcast)) poll_other_roots();
  CollHeader n;
  int src = 0;
  while (take_notice(c, &n, &src)) {
    const int32_t ahead = static_cast<int32_t>(n.seq - coll_hdr_.seq);
    if (ahead > 0) {  // about a call this rank has not reached yet
      early_notices_.push_back(Notice{c.id, n.seq, src, n});
      continue;
    }
    if (ahead < 0) continue;  // about a call this rank already finished
    check_header(coll_hdr_, as_told(coll_hdr_, n), cfg_.rank, src, c.name);  // REMOTE for a failed call
    fail(TPPP_ERR_INVALID_USAGE, "rank %d: %s on '%s' (call #%u): rank %d made no such call (it skipped it, e.g. a "
         "layer forward with 0 rows)", cfg_.rank, describe(coll_hdr_).c_str(), c.name, coll_hdr_.seq, src);
  }
}

// A broadcast whose ranks disagree on the root: messages of this call (same
// sequence number) whose tag names another root match no receive of this
// rank; take one and report both calls.
void UcxTransport::poll_other_roots() {
  const Comm& c = *coll_comm_;
  const uint64_t seq_low = static_cast<uint64_t>(coll_hdr_.seq & 0xff) << 32;
  const uint64_t mask = (1ull << 63) | (0x7full << 56) | (0xffull << 32) | (0xffffull << 8);
  for (int r = 0; r < c.size(); r++) {
    if (r == coll_hdr_.root) continue;
    ucp_tag_recv_info_t info{};
    ucp_tag_message_h m =
        ucp_tag_probe_nb(worker_, make_tag(true, c, 0, seq_low | broadcast_step(r, 0)), mask, 1, &info);
    if (!m) continue;
    std::vector<char> bytes(info.length >= sizeof(CollHeader) ? info.length : sizeof(CollHeader));
    if (coll_deadline_ == steady_clock::time_point{})
      coll_deadline_ = steady_clock::now() + std::chrono::milliseconds(cfg_.timeout_ms);
    if (!recv_probed(m, bytes.data(), bytes.size(), coll_deadline_)) continue;
    CollHeader theirs;
    std::memcpy(&theirs, bytes.data(), sizeof theirs);
    check_header(coll_hdr_, theirs, cfg_.rank, static_cast<int>((info.sender_tag >> 40) & 0xffff), c.name);
  }
}

}  // namespace tppp
