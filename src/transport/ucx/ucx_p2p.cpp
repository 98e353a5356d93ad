// The UCX transport's p2p hot path (docs/DESIGN.md section 3): isend and
// irecv hand out a shared done-request when UCX finishes the operation in
// place (no Op taken, nothing written), else a pooled Op's request; the C
// API then reads the request's ok flag instead of calling test or wait.
// Every store here counts: a sender's stores queue behind the cache line
// UCX's shared-memory FIFO write is still fetching (bench/results/comm-*).
// Also here: the stream backoff of a receive's wait.
#include "transport/ucx/ucx_transport.hpp"

#include "core/error.hpp"

namespace tppp {

// Out of line (noinline), so new_op stays a pop on the hot path.
void UcxTransport::grow_ops() {
  all_ops_.emplace_back(new Op());
  Op* fresh = all_ops_.back().get();
  fresh->t = this;  // t and req.op never change
  fresh->req.op = fresh;
  free_ops_.reserve(all_ops_.capacity());  // so returning an op never allocates
  free_ops_.push_back(fresh);
}

namespace {
// A p2p operation UCX finished in place (an eager send, a receive of a
// message already here): nothing to track, no Op taken. One shared,
// immutable request stands for all of them; releasing it does nothing.
class DoneRequest final : public Request {
 public:
  DoneRequest() { ok = true; }
  bool test() override { return true; }
  void wait() override {}
  void release() noexcept override {}
};
DoneRequest g_done;
}  // namespace

// Takes the pool's next Op for a p2p operation UCX will finish later.
UcxTransport::Op* UcxTransport::take_op(int peer, size_t n, bool is_recv) {
  Op* op = free_ops_.back();
  free_ops_.pop_back();
  op->ucx_req = nullptr;
  op->length = 0;
  op->expected = n;
  op->peer = peer;
  op->status = UCS_OK;
  op->is_recv = is_recv;
  op->done = op->released = op->coll = op->inline_data = op->delivered = false;
  op->what = is_recv ? "recv" : "send";
  op->req.ok = false;
  op->req.deadline = {};
  return op;
}

// What UCX returned for a taken Op: an error, or its request (unless the
// callback, which NO_IMM_CMPL lets run inside the call, already finished it).
RequestPtr UcxTransport::posted(Op* op, ucs_status_ptr_t sp) {
  if (UCS_PTR_IS_ERR(sp)) {
    op->done = true;
    op->status = UCS_PTR_STATUS(sp);
  } else if (!op->done) {
    op->ucx_req = sp;
  }
  return RequestPtr(&op->req);
}

// The hot path of both: the pool's next Op is only named as the callback's
// user data, and taken (its fields written) only when UCX returns a request.
// Without UCP_OP_ATTR_FLAG_NO_IMM_CMPL, UCX runs no callback inside the
// call: an operation it finishes there comes back as NULL, one it finishes
// later calls back from a progress call, after take_op.
RequestPtr UcxTransport::isend(const Comm& c, int peer, uint32_t tag, const void* buf, size_t n, Place) {
  if (cfg_.abort_flag && cfg_.abort_flag->load()) throw_aborted("send");
  sends_++;
  const int dst = c.ranks[static_cast<size_t>(peer)];
  if (free_ops_.empty()) grow_ops();
  ucp_request_param_t prm;  // UCX reads only the fields op_attr_mask names
  prm.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
  prm.cb.send = &UcxTransport::send_cb;
  prm.user_data = free_ops_.back();
  ucs_status_ptr_t sp =
      ucp_tag_send_nbx(eps_[static_cast<size_t>(dst)], buf, n, make_tag(false, c, cfg_.rank, tag), &prm);
  if (sp == nullptr) return RequestPtr(&g_done);
  return posted(take_op(dst, n, false), sp);
}

RequestPtr UcxTransport::irecv(const Comm& c, int peer, uint32_t tag, void* buf, size_t n, Place) {
  if (cfg_.abort_flag && cfg_.abort_flag->load()) throw_aborted("recv");
  const int src = c.ranks[static_cast<size_t>(peer)];
  const uint64_t full_tag = make_tag(false, c, src, tag);
  if (free_ops_.empty()) grow_ops();
  ucp_request_param_t prm;  // UCX reads only the fields op_attr_mask names
  prm.cb.recv = &UcxTransport::recv_cb;
  // UCX 1.13 leaves recv_info.tag_info's length at 0 on immediate completion
  // (openucx/ucx#9425, fixed in 1.16), so completion goes through the
  // callback, which reports the length, unless a probe shows the message
  // already here with exactly the posted length: then it may complete in
  // place, without a UCX request (a receiver behind its sender saves the
  // request, the callback and the Op per message). A receiver ahead of its
  // sender skips the probe (probe_first_) until a message is found waiting.
  ucp_tag_recv_info_t info;
  if (probe_first_) {
    if (ucp_tag_probe_nb(worker_, full_tag, ~0ull, 0, &info)) {
      if (info.length == n) {
        prm.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
        prm.user_data = free_ops_.back();
        ucs_status_ptr_t sp = ucp_tag_recv_nbx(worker_, buf, n, full_tag, ~0ull, &prm);
        if (sp == nullptr) {  // the probed message, n bytes
          sends_at_recv_ = sends_;
          return RequestPtr(&g_done);
        }
        return posted(take_op(src, n, true), sp);       // a rendezvous: UCX fetches it later
      }
    } else {
      probe_first_ = false;
    }
  }
  // The callback may run inside the call (a message already here, e.g. a
  // truncated one): the Op is ready before it.
  Op* op = take_op(src, n, true);
  prm.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA | UCP_OP_ATTR_FLAG_NO_IMM_CMPL;
  prm.user_data = op;
  RequestPtr r = posted(op, ucp_tag_recv_nbx(worker_, buf, n, full_tag, ~0ull, &prm));
  if (op->done) probe_first_ = true;  // it was already here: this receiver is behind
  return r;
}

bool UcxTransport::OpRequest::test() { return ok || op->t->test_op(op, &deadline); }
void UcxTransport::OpRequest::wait() {
  if (!ok) op->t->wait_op(op, &deadline);
}
void UcxTransport::OpRequest::release() noexcept {
  UcxTransport* t = op->t;
  if (op->done && t->unsettled_.empty()) {  // the hot path: straight back to the pool
    t->free_ops_.push_back(op);  // cannot throw: the pool's capacity covers every op (new_op)
    return;
  }
  t->release_op(op);
  t->settle_released();
}

// On one host, a stream of small messages runs at the pace of a race on
// UCX's shared-memory FIFO (docs/DESIGN.md section 3; measured in
// bench/results/comm-2026-12-06-vm.md): each send's lock cmpxchg on the FIFO
// head waits for its previous element's cache line, and a receiver that keeps
// up polls the very element the sender is filling and pulls that line back,
// so every message pays cross-core transfers. A receiver that steps back
// briefly whenever it finds itself ahead lets the sender fill several
// elements uncontended and then takes them in one sweep: with 150 ns, 32-64
// B streams ran 1.5-1.65x faster (bench/results/comm-2026-12-06-vm.md). It
// costs a wait up to that much latency, so only the receiving end of a
// one-way stream steps back: a p2p receive still pending at its wait, from a
// peer on this host, on a rank that has sent nothing since its last receive
// finished. A ping-pong or any request and reply answers between receives
// and polls at once (its latency is unchanged); a receiver behind its sender
// finds its message done and never gets here. The clock bounds the step, not
// a count of PAUSE instructions, whose length differs by an order of
// magnitude between CPUs (Intel's optimization manual: ~140 cycles from
// Skylake on, a tenth of that before).
void UcxTransport::stream_backoff(const Op* op) const {
  if (stream_backoff_.count() == 0 || !op->is_recv || op->coll || op->peer < 0) return;
  if (sends_ != sends_at_recv_) return;  // it answered since its last receive: latency first
  if (!peers_[static_cast<size_t>(op->peer)]->local) return;
  const auto until = std::chrono::steady_clock::now() + stream_backoff_;
  while (std::chrono::steady_clock::now() < until) {
  }
}

}  // namespace tppp
