// UCX transport. Tag layout (64 bits), so every receive names its source and
// message space exactly (no wildcards, so no cross-talk between groups):
//   [63] collective?  [62:56] comm id  [55:40] source global rank
//   [39:0] p2p: tag (32 bits, transport/tags.hpp) | collective: seq (8) << 32 | step (32)
// UCX matches messages from one sender in order, so equal tags are FIFO.
#include "transport/ucx/ucx_transport.hpp"
#include "transport/ucx/ucx_config.hpp"

#include <sched.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>

#include "core/bootstrap.hpp"
#include "core/env.hpp"
#include "core/error.hpp"
#include "core/log.hpp"

namespace tppp {
namespace {

using std::chrono::steady_clock;

bool is_peer_failure(ucs_status_t s) {
  return s == UCS_ERR_ENDPOINT_TIMEOUT || s == UCS_ERR_CONNECTION_RESET || s == UCS_ERR_UNREACHABLE ||
         s == UCS_ERR_REJECTED || s == UCS_ERR_NOT_CONNECTED;
}

// Identifies "same kernel, same pid namespace": pids are comparable then.
uint64_t host_key() {
  std::string boot;
  std::ifstream f("/proc/sys/kernel/random/boot_id");
  std::getline(f, boot);
  struct stat st {};
  ::stat("/proc/self/ns/pid", &st);
  char host[256] = {0};
  ::gethostname(host, sizeof host - 1);
  std::string key = boot + "|" + std::to_string(st.st_ino) + "|" + host;
  return fnv1a64(key.data(), key.size());
}

struct AddrHead {
  uint64_t host;
  int32_t pid;
  uint32_t pad;
  char name[64];  // the host name, for messages
};

bool process_gone(int pid) {
  if (::kill(pid, 0) != 0) return errno == ESRCH;
  // A zombie (dead, not yet reaped by its parent) still answers kill(0).
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(f, line)) return true;
  size_t rp = line.rfind(')');
  return rp != std::string::npos && rp + 2 < line.size() && (line[rp + 2] == 'Z' || line[rp + 2] == 'X');
}

void check_ucs(ucs_status_t s, const char* what) {
  if (s != UCS_OK) fail(TPPP_ERR_UCX, "UCX %s failed: %s", what, ucs_status_string(s));
}

}  // namespace

UcxTransport::UcxTransport(Bootstrap& bs, const TransportConfig& cfg) : cfg_(cfg), coll_(*this) {
  try {
    // A bad value fails every rank before any exchange.
    stream_backoff_ = std::chrono::nanoseconds(env_int(Env::UcxStreamBackoffNs, 0, 100000));
    ucp_config_t* config = nullptr;
    check_ucs(ucp_config_read(nullptr, nullptr, &config), "ucp_config_read");
    configure_ucx(config, cfg);
    ucp_params_t p{};
    p.field_mask = UCP_PARAM_FIELD_FEATURES | UCP_PARAM_FIELD_ESTIMATED_NUM_EPS;
    p.features = UCP_FEATURE_TAG;
    p.estimated_num_eps = static_cast<size_t>(cfg.world);
    ucs_status_t s = ucp_init(&p, config, &ctx_);
    ucp_config_release(config);
    check_ucs(s, "ucp_init");
    ucp_worker_params_t wp{};
    wp.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
    wp.thread_mode = UCS_THREAD_MODE_SINGLE;
    check_ucs(ucp_worker_create(ctx_, &wp, &worker_), "ucp_worker_create");
    ucp_address_t* addr = nullptr;
    size_t addr_len = 0;
    check_ucs(ucp_worker_get_address(worker_, &addr, &addr_len), "ucp_worker_get_address");
    AddrHead head{host_key(), static_cast<int32_t>(::getpid()), 0, {0}};
    ::gethostname(head.name, sizeof head.name - 1);
    std::string mine(reinterpret_cast<const char*>(&head), sizeof head);
    mine.append(reinterpret_cast<const char*>(addr), addr_len);
    ucp_worker_release_address(worker_, addr);
    std::vector<std::string> all = bs.all_gather(mine);
    const bool force_peer_mode = env_str(Env::UcxErrMode) == "peer";

    peers_.resize(static_cast<size_t>(cfg.world));
    eps_.assign(static_cast<size_t>(cfg.world), nullptr);
    for (int r = 0; r < cfg.world; r++) {
      const std::string& blob = all[static_cast<size_t>(r)];
      if (blob.size() <= sizeof(AddrHead))
        fail(TPPP_ERR_FORMAT, "UCX address of rank %d is %zu bytes: too short", r, blob.size());
      AddrHead h;
      std::memcpy(&h, blob.data(), sizeof h);
      h.name[sizeof h.name - 1] = 0;
      Peer* peer = new Peer{this, r, {0}, h.pid, h.host == head.host && !force_peer_mode, h.host, h.name};
      peers_[static_cast<size_t>(r)].reset(peer);
      ucp_ep_params_t ep{};
      ep.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS | UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE |
                      UCP_EP_PARAM_FIELD_ERR_HANDLER;
      ep.address = reinterpret_cast<const ucp_address_t*>(blob.data() + sizeof(AddrHead));
      ep.err_mode = peer->local ? UCP_ERR_HANDLING_MODE_NONE : UCP_ERR_HANDLING_MODE_PEER;
      ep.err_handler.cb = &UcxTransport::ep_error_cb;
      ep.err_handler.arg = peers_[static_cast<size_t>(r)].get();
      s = ucp_ep_create(worker_, &ep, &eps_[static_cast<size_t>(r)]);
      if (s != UCS_OK)
        fail(TPPP_ERR_UCX, "UCX ucp_ep_create to rank %d failed: %s", r, ucs_status_string(s));
    }
    // Wire-up check: returns only once every rank can talk to its peers.
    Comm world;
    world.id = CommId::World;
    world.me = cfg.rank;
    for (int r = 0; r < cfg.world; r++) world.ranks.push_back(r);
    coll_.barrier(world);
    std::vector<uint8_t> local(static_cast<size_t>(cfg.world));
    for (int r = 0; r < cfg.world; r++) local[static_cast<size_t>(r)] = peers_[static_cast<size_t>(r)]->local;
    shm_.reset(new ShmCollectives(bs, cfg.rank, local, env_str(Env::CollShm) != "0"));
    oversubscribed_ = shm_->oversubscribed();
    for (int8_t& s : shm_comm_) s = -1;  // the barrier above ran without it
  } catch (...) {
    shutdown();
    throw;
  }
}

UcxTransport::~UcxTransport() { shutdown(); }

// Receives and drops every message nobody will receive (a notice about a
// collective this rank finished, a failed call's leftovers): UCX warns about
// each unexpected message still queued when the worker is destroyed.
bool UcxTransport::recv_probed(ucp_tag_message_h m, void* buf, size_t n,
                               steady_clock::time_point deadline) noexcept {
  // Thread-local, not on the stack: a cancelled receive's callback runs
  // during a later progress call (UCX progresses on this thread).
  thread_local bool done;
  done = false;
  ucp_request_param_t prm{};
  prm.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
  prm.cb.recv = [](void* req, ucs_status_t, const ucp_tag_recv_info_t*, void* user) {
    *static_cast<bool*>(user) = true;
    ucp_request_free(req);
  };
  prm.user_data = &done;
  ucs_status_ptr_t sp = ucp_tag_msg_recv_nbx(worker_, buf, n, m, &prm);
  if (UCS_PTR_IS_ERR(sp)) return false;
  if (!sp) return true;  // completed in place
  while (!done && steady_clock::now() < deadline) ucp_worker_progress(worker_);
  if (done) return true;
  ucp_request_cancel(worker_, sp);  // not here in time: cancel, and let the cancellation complete
  for (int k = 0; k < 1000 && !done; k++) ucp_worker_progress(worker_);
  return false;
}

void UcxTransport::drain_unexpected(steady_clock::time_point deadline) noexcept {
  std::vector<char> sink;
  for (int i = 0; i < 1 << 16 && steady_clock::now() < deadline; i++) {
    ucp_tag_recv_info_t info{};
    // A large (rendezvous) one is fetched from its sender, which frees the
    // sender's request too; a sender that is gone fails or times out the
    // receive, which then ends the drain.
    if (!ucp_tag_probe_nb(worker_, 0, 0, 0, &info) || info.length > (size_t(1) << 30)) return;
    ucp_tag_message_h m = ucp_tag_probe_nb(worker_, 0, 0, 1, &info);
    if (!m) return;
    sink.resize(info.length ? info.length : 1);
    if (!recv_probed(m, sink.data(), sink.size(), deadline)) return;
  }
}

void UcxTransport::shutdown() noexcept {
  shm_.reset();
  if (!worker_) {
    if (ctx_) ucp_cleanup(ctx_);
    ctx_ = nullptr;
    return;
  }
  // Cancel what is still posted, then close the endpoints: flush when all is
  // quiet, force (which fails pending sends) after an abort or an error left
  // operations behind, since UCX must not destroy an endpoint with requests
  // on it. Bounded by a short deadline so a dead peer cannot hold us.
  const bool aborted = cfg_.abort_flag && cfg_.abort_flag->load();
  for (auto& op : all_ops_)
    if (op->is_recv && !op->done && op->ucx_req) ucp_request_cancel(worker_, op->ucx_req);
  // A send still pending to a live peer (a failed call's leftover) completes
  // when that peer receives it, and every rank drains what it was sent when
  // it shuts down: give that a moment before forcing the endpoints closed.
  auto send_pending = [this] {
    for (auto& op : all_ops_)
      if (!op->is_recv && !op->done && op->ucx_req && op->peer >= 0 &&
          !peer_dead(op->peer))
        return true;
    return false;
  };
  auto send_pending_any = [this] {
    for (auto& op : all_ops_)
      if (!op->is_recv && !op->done && op->ucx_req) return true;
    return false;
  };
  const auto send_dl = steady_clock::now() + std::chrono::milliseconds(std::min(cfg_.timeout_ms, 1000));
  while (!aborted && send_pending() && steady_clock::now() < send_dl) {
    drain_unexpected(send_dl);
    if (!ucp_worker_progress(worker_)) sched_yield();
  }
  bool force = aborted;
  for (auto& op : all_ops_) {
    if (op->done || !op->ucx_req) continue;
    force = true;
    // A rendezvous send to a peer that will never fetch it: cancelled (UCX
    // completes it with UCS_ERR_CANCELED), or it is never returned to UCX's pool.
    if (!op->is_recv) ucp_request_cancel(worker_, op->ucx_req);
  }
  for (int i = 0; i < 1000 && send_pending_any(); i++) ucp_worker_progress(worker_);
  // A cancelled receive completes (and returns its request to UCX) on a later progress call.
  const auto cancel_dl = steady_clock::now() + std::chrono::milliseconds(std::min(cfg_.timeout_ms, 200));
  for (bool pending = true; pending && steady_clock::now() < cancel_dl;) {
    ucp_worker_progress(worker_);
    pending = false;
    for (auto& op : all_ops_) pending = pending || (op->is_recv && !op->done && op->ucx_req);
  }
  drain_unexpected(steady_clock::now() + std::chrono::milliseconds(std::min(cfg_.timeout_ms, 500)));
  std::vector<void*> closing;
  for (size_t r = 0; r < eps_.size(); r++) {
    if (!eps_[r]) continue;
    ucp_request_param_t prm{};
    prm.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
    prm.flags = (force || peers_[r]->failed.load()) ? UCP_EP_CLOSE_FLAG_FORCE : 0;
    ucs_status_ptr_t sp = ucp_ep_close_nbx(eps_[r], &prm);
    if (sp && !UCS_PTR_IS_ERR(sp)) closing.push_back(sp);
    eps_[r] = nullptr;
  }
  auto dl = steady_clock::now() + std::chrono::milliseconds(std::min(cfg_.timeout_ms, 2000));
  for (void* req : closing) {
    while (ucp_request_check_status(req) == UCS_INPROGRESS && steady_clock::now() < dl) {
      if (!ucp_worker_progress(worker_)) sched_yield();
    }
    // Freed even in progress (a flush to a live peer that never answers):
    ucp_request_free(req);  // worker destroy asserts on an unreleased one
  }
  // Let cancelled operations deliver their callbacks before the worker goes.
  for (int i = 0; i < 100 && ucp_worker_progress(worker_); i++) {
  }
  ucp_worker_destroy(worker_);
  worker_ = nullptr;
  if (ctx_) ucp_cleanup(ctx_);
  ctx_ = nullptr;
}

void UcxTransport::ep_error_cb(void* arg, ucp_ep_h, ucs_status_t status) {
  Peer* p = static_cast<Peer*>(arg);
  p->failed.store(static_cast<int>(status) ? static_cast<int>(status) : -1);
  std::lock_guard<std::mutex> lk(p->t->err_mu_);
  if (p->t->async_status_ == TPPP_OK) {
    p->t->async_status_ = TPPP_ERR_REMOTE;
    p->t->async_msg_ = strf("UCX connection from rank %d to rank %d (%s) failed: %s (peer dead or unreachable)",
                            p->t->cfg_.rank, p->rank, p->t->who(p->rank).c_str(), ucs_status_string(status));
  }
  // INFO, not WARN: a peer that finished and closed looks the same from here.
  TPPP_LOG(TPPP_LOG_INFO, "rank %d: UCX connection to rank %d failed: %s", p->t->cfg_.rank, p->rank,
           ucs_status_string(status));
}

std::string UcxTransport::who(int rank) const {
  const Peer& p = *peers_[static_cast<size_t>(rank)];
  return strf("pid %d on %s%s", p.pid, p.host_name.empty() ? "an unnamed host" : p.host_name.c_str(),
              p.local ? ", this host" : "");
}

bool UcxTransport::peer_dead(int rank) {
  Peer& p = *peers_[static_cast<size_t>(rank)];
  if (p.failed.load()) return true;
  if (!p.local || rank == cfg_.rank) return false;
  auto now = steady_clock::now();
  if (now < next_liveness_check_) return false;
  next_liveness_check_ = now + std::chrono::milliseconds(100);
  if (!process_gone(p.pid)) return false;
  p.failed.store(static_cast<int>(UCS_ERR_ENDPOINT_TIMEOUT));
  std::lock_guard<std::mutex> lk(err_mu_);
  if (async_status_ == TPPP_OK) {
    async_status_ = TPPP_ERR_REMOTE;
    async_msg_ = strf("rank %d (%s) died", rank, who(rank).c_str());
  }
  return true;
}

tppp_status UcxTransport::async_error(std::string* msg) const {
  std::lock_guard<std::mutex> lk(err_mu_);
  if (msg) *msg = async_msg_;
  return async_status_;
}

void UcxTransport::abort() noexcept {
  if (cfg_.abort_flag) cfg_.abort_flag->store(1);
}

void UcxTransport::throw_aborted(const char* what) const {
  fail(TPPP_ERR_ABORTED, "rank %d: %s cancelled: the group was aborted (tppp_group_abort)", cfg_.rank, what);
}

UcxTransport::Op* UcxTransport::new_op() {
  if (free_ops_.empty()) grow_ops();
  Op* op = free_ops_.back();
  free_ops_.pop_back();
  // Field by field: the inline buffer (2 KiB) is written before it is read.
  op->ucx_req = nullptr;
  op->status = UCS_OK;
  op->length = 0;
  op->is_recv = op->done = op->released = op->coll = false;
  op->inline_data = op->delivered = false;
  op->req.deadline = {};
  op->req.ok = false;
  return op;  // the caller sets peer, expected, what (and user for an inline receive)
}

void UcxTransport::free_op(Op* op) {
  op->done = true;
  op->released = false;
  op->ucx_req = nullptr;
  free_ops_.push_back(op);
}

void UcxTransport::send_cb(void* request, ucs_status_t status, void* user) {
  Op* op = static_cast<Op*>(user);
  op->status = status;
  op->done = true;
  op->req.ok = settled_ok(op);
  op->ucx_req = nullptr;
  ucp_request_free(request);
  if (op->released) op->t->free_op(op);
}

void UcxTransport::recv_cb(void* request, ucs_status_t status, const ucp_tag_recv_info_t* info, void* user) {
  Op* op = static_cast<Op*>(user);
  if (!op->coll) op->t->sends_at_recv_ = op->t->sends_;
  op->status = status;
  op->length = (status == UCS_OK && info) ? info->length : 0;
  op->done = true;
  op->req.ok = settled_ok(op);
  op->ucx_req = nullptr;
  ucp_request_free(request);
  if (op->released) op->t->free_op(op);
}

// A collective message is [CollHeader | data] as one UCX message: small ones
// copied into the Op's own buffer (contiguous, so UCX keeps its eager-short
// path), large ones as an IOV (no copy, no second message). Header, buffer
// and IOV live in the pooled Op, which outlives the UCX request.
namespace {
const void* with_header(UcxTransport::Op* op, const void* buf, size_t n, ucp_request_param_t* prm, size_t* count,
                        bool recv) {
  op->coll = true;
  if (n <= UcxTransport::Op::kInlineData) {
    op->inline_data = true;
    if (recv) {
      op->user = const_cast<void*>(buf);
    } else {  // op->hdr holds the header: the caller wrote it
      std::memcpy(op->inline_buf, &op->hdr, sizeof(CollHeader));
      if (n) std::memcpy(op->inline_buf + sizeof(CollHeader), buf, n);
    }
    *count = sizeof(CollHeader) + n;
    return op->inline_buf;
  }
  op->iov[0].buffer = &op->hdr;
  op->iov[0].length = sizeof(CollHeader);
  op->iov[1].buffer = const_cast<void*>(buf);
  op->iov[1].length = n;
  prm->op_attr_mask |= UCP_OP_ATTR_FIELD_DATATYPE;
  prm->datatype = ucp_dt_make_iov();
  *count = n ? 2 : 1;
  return op->iov;
}
}  // namespace

UcxTransport::Op* UcxTransport::post_send(int peer, uint64_t tag, const void* buf, size_t n, const char* what,
                                          const CollHeader* hdr) {
  if (cfg_.abort_flag && cfg_.abort_flag->load()) throw_aborted(what);
  sends_++;
  Op* op = new_op();
  op->peer = peer;
  op->expected = n;
  op->what = what;
  ucp_request_param_t prm;  // UCX reads only the fields op_attr_mask names
  prm.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
  prm.cb.send = &UcxTransport::send_cb;
  prm.user_data = op;
  size_t count = n;
  if (hdr) {
    op->hdr = *hdr;
    buf = with_header(op, buf, n, &prm, &count, false);
  }
  ucs_status_ptr_t sp = ucp_tag_send_nbx(eps_[static_cast<size_t>(peer)], buf, count, tag, &prm);
  if (sp == nullptr) {
    op->done = true;
    op->req.ok = !op->coll;
  } else if (UCS_PTR_IS_ERR(sp)) {
    op->done = true;
    op->status = UCS_PTR_STATUS(sp);
  } else if (!op->done) {
    op->ucx_req = sp;
  }
  return op;
}

UcxTransport::Op* UcxTransport::post_recv(int peer, uint64_t tag, void* buf, size_t n, const char* what, bool coll) {
  if (cfg_.abort_flag && cfg_.abort_flag->load()) throw_aborted(what);
  Op* op = new_op();
  op->peer = peer;
  op->expected = coll ? n + sizeof(CollHeader) : n;
  op->is_recv = true;
  op->what = what;
  op->user = nullptr;
  ucp_request_param_t prm;  // UCX reads only the fields op_attr_mask names
  prm.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA | UCP_OP_ATTR_FLAG_NO_IMM_CMPL;
  prm.cb.recv = &UcxTransport::recv_cb;
  prm.user_data = op;
  size_t count = n;
  void* dst = coll ? const_cast<void*>(with_header(op, buf, n, &prm, &count, true)) : buf;
  ucs_status_ptr_t sp = ucp_tag_recv_nbx(worker_, dst, count, tag, ~0ull, &prm);
  if (UCS_PTR_IS_ERR(sp)) {
    op->done = true;
    op->status = UCS_PTR_STATUS(sp);
  } else if (sp != nullptr && !op->done) {  // NO_IMM_CMPL: always a request (or an error)
    op->ucx_req = sp;
  }
  return op;
}

void UcxTransport::check_op(Op* op) {
  const char* dir = op->is_recv ? "from" : "to";
  // A collective message names its call: check that before its size or data
  // (once: coll_wait_all skips ops coll_wait already took).
  if (op->coll && op->is_recv && !op->delivered && op->status == UCS_OK && op->length >= sizeof(CollHeader) &&
      coll_comm_) {
    if (op->inline_data) std::memcpy(&op->hdr, op->inline_buf, sizeof(CollHeader));
    if (!header_matches(coll_hdr_, op->hdr)) check_header(coll_hdr_, op->hdr, cfg_.rank, op->peer, coll_comm_->name);
    if (op->length == op->expected) {
      if (op->inline_data && op->expected > sizeof(CollHeader))
        std::memcpy(op->user, op->inline_buf + sizeof(CollHeader), op->expected - sizeof(CollHeader));
      op->delivered = true;
      return;
    }
  }
  if (op->status == UCS_OK) {
    if (op->is_recv && op->length != op->expected)
      fail(TPPP_ERR_INVALID_USAGE,
           "rank %d: %s: rank %d sent %zu bytes but this rank posted %zu (buffers of mismatched size)", cfg_.rank,
           op->what, op->peer, op->length, op->expected);
    op->delivered = true;  // checked: coll_wait_all need not wait for it again
    return;
  }
  if (op->status == UCS_ERR_MESSAGE_TRUNCATED && op->coll && coll_comm_)
    fail(TPPP_ERR_INVALID_USAGE,
         "rank %d: collective call #%u on '%s' differs across ranks: this rank called %s, rank %d sent a longer "
         "message than that call takes",
         cfg_.rank, coll_hdr_.seq, coll_comm_->name, describe(coll_hdr_).c_str(), op->peer);
  if (op->status == UCS_ERR_MESSAGE_TRUNCATED)
    fail(TPPP_ERR_INVALID_USAGE,
         "rank %d: %s: rank %d sent more than the %zu bytes this rank posted (buffers of mismatched size)",
         cfg_.rank, op->what, op->peer, op->expected);
  if (op->status == UCS_ERR_CANCELED) throw_aborted(op->what);
  if (is_peer_failure(op->status))
    fail(TPPP_ERR_REMOTE, "rank %d: %s %s rank %d (%s) failed: %s (peer dead or unreachable)", cfg_.rank, op->what,
         dir, op->peer, who(op->peer).c_str(), ucs_status_string(op->status));
  // Whatever status UCX picked, a peer known to be gone makes it REMOTE.
  const Peer& pr = *peers_[static_cast<size_t>(op->peer)];
  if (pr.failed.load() || (pr.local && op->peer != cfg_.rank && process_gone(pr.pid)))
    fail(TPPP_ERR_REMOTE, "rank %d: %s %s rank %d (%s) failed: that peer is dead or unreachable (UCX: %s)",
         cfg_.rank, op->what, dir, op->peer, who(op->peer).c_str(), ucs_status_string(op->status));
  fail(TPPP_ERR_UCX, "rank %d: %s %s rank %d failed: %s", cfg_.rank, op->what, dir, op->peer,
       ucs_status_string(op->status));
}

bool UcxTransport::test_op(Op* op, steady_clock::time_point* deadline) {
  if (cfg_.abort_flag && cfg_.abort_flag->load()) throw_aborted(op->what);
  if (!op->done) ucp_worker_progress(worker_);
  if (op->done) {
    check_op(op);
    return true;
  }
  if (peer_dead(op->peer)) {
    // Its last messages (a barrier's, then exit) may still be queued here: deliver them first.
    for (int quiet = 0; quiet < 2 && !op->done;) quiet = ucp_worker_progress(worker_) ? 0 : quiet + 1;
    if (op->done) return check_op(op), true;
    fail(TPPP_ERR_REMOTE, "rank %d: %s %s rank %d: that peer is dead (%s: process gone or its connection failed)",
         cfg_.rank, op->what, op->is_recv ? "from" : "to", op->peer, who(op->peer).c_str());
  }
  const auto now = steady_clock::now();
  if (*deadline == steady_clock::time_point{})
    *deadline = now + std::chrono::milliseconds(cfg_.timeout_ms);
  else if (now > *deadline)
    fail(TPPP_ERR_TIMEOUT, "rank %d: %s %s rank %d (%s) timed out after %d ms (peer not posting, stuck or dead)",
         cfg_.rank, op->what, op->is_recv ? "from" : "to", op->peer, who(op->peer).c_str(), cfg_.timeout_ms);
  return false;
}

void UcxTransport::wait_op(Op* op, steady_clock::time_point* deadline) {
  unsigned spins = 0, idle = 0;
  if (!op->done) stream_backoff(op);
  // Idle polls before a yield: at once on oversubscribed cores (more ranks
  // on this host than CPUs); a few (~2 us) for a peer on another host, whose
  // link takes 10 us or more anyway, so its wait leaves the core to ranks
  // with work (Open MPI's yield_when_idle); ~30 us for a local peer, whose
  // messages take ~0.2 us.
  // A yield that took long (more busy processes than CPUs, which launcher
  // counts can miss) makes waits yield sooner for a second (Open MPI's
  // yield_when_idle): a collective's at every idle poll (its chain of hops
  // stalls on any rank not running), a p2p wait's after 16 (~0.5 us; a
  // 0.2-us ping-pong alone on its core rarely gets there). DESIGN section 3.
  const unsigned base_limit =
      oversubscribed_ ? 1 : (op->peer >= 0 && !peers_[static_cast<size_t>(op->peer)]->local ? 64 : 1024);
  const unsigned contended_limit = std::min(op->coll ? 1u : 16u, base_limit);
  unsigned idle_limit = contended_ ? contended_limit : base_limit;
  while (!op->done) {
    if (ucp_worker_progress(worker_)) {
      idle = 0;
    } else if (++idle >= idle_limit) {
      idle = 0;
      const auto t0 = steady_clock::now();
      sched_yield();
      const auto t1 = steady_clock::now();
      if (t1 - t0 > std::chrono::microseconds(20)) {
        contended_ = true;
        contended_until_ = t1 + std::chrono::seconds(1);
      } else if (contended_ && t1 > contended_until_) {
        contended_ = false;
      }
      idle_limit = contended_ ? contended_limit : base_limit;
    }
    if (op->done) break;
    // A peer's notice (it failed or skipped this collective) matters only
    // when the data does not come: probe for one after ~4096 idle spins
    // (tens of us), not on the fast path.
    if ((spins & 4095) == 4095 && op->coll && coll_comm_) poll_notices();
    if ((++spins & 31) == 0 && !test_op(op, deadline)) continue;
  }
  check_op(op);
}

void UcxTransport::release_op(Op* op) {
  if (op->done) {
    free_op(op);
    return;
  }
  if (op->is_recv && op->ucx_req) ucp_request_cancel(worker_, op->ucx_req);
  op->released = true;  // it completes (or fails) on a later progress and frees itself
  const bool user_memory = !op->coll || !op->inline_data;
  if (user_memory && op->peer >= 0 && op->peer != cfg_.rank) unsettled_.push_back(op);
}

// Released ops that read or write the caller's memory (every p2p op; a
// collective's large messages, sent and received as an IOV of the caller's
// buffer), left by a failed call or a freed request: a matched rendezvous
// cannot be cancelled, and would touch the buffer after the call returned
// (freed, or in use by the next call). They get a short grace, one window
// for all released together, to finish while live peers take or send their
// part; a dead, stuck or aborted peer's stay pending (c_api.h: keep such a
// call's buffers until the group is destroyed).
void UcxTransport::settle_released() noexcept {
  if (unsettled_.empty()) return;
  const auto now = steady_clock::now();
  if (now >= settle_window_end_) settle_window_end_ = now + std::chrono::milliseconds(std::min(cfg_.timeout_ms, 200));
  auto pending = [this] {
    for (Op* op : unsettled_) {
      if (op->done) continue;
      const Peer& pr = *peers_[static_cast<size_t>(op->peer)];
      if (!pr.failed.load() && !(pr.local && process_gone(pr.pid))) return true;
    }
    return false;
  };
  const bool aborted = cfg_.abort_flag && cfg_.abort_flag->load();
  while (!aborted && steady_clock::now() < settle_window_end_ && pending())
    for (int i = 0; i < 64; i++)
      if (!ucp_worker_progress(worker_)) sched_yield();
  unsettled_.clear();
}

}  // namespace tppp

namespace tppp {

bool UcxTransport::moves_device_memory() const {
  ucp_context_attr_t a{};
  a.field_mask = UCP_ATTR_FIELD_MEMORY_TYPES;
  if (ucp_context_query(ctx_, &a) != UCS_OK) return false;
  return (a.memory_types & UCS_BIT(UCS_MEMORY_TYPE_CUDA)) != 0;
}

}  // namespace tppp
