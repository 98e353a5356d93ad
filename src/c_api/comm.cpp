// extern "C" shims of communication: p2p with requests, and the collectives.
// The C API takes raw pointers without a memory kind; here, at the boundary,
// a CUDA group asks CUDA once which side each buffer is on (a CPU group's
// buffers are host memory), and the kind travels with the call from here on.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "c_api.h"
#include "c_api/handles.hpp"
#include "c_api/shim.hpp"
#include "core/error.hpp"
#include "core/log.hpp"
#include "cuda/device.hpp"

struct tppp_request_s {
  tppp_shim::RequestHome* home = nullptr;  // where it goes back when freed
  tppp::Request* r = nullptr;              // the transport's, released by tppp_request_free
  tppp_status result = TPPP_ERR_IN_PROGRESS;
  std::string message;  // of a failed result, repeated on later calls
};

namespace tppp_shim {

// A group's request handles: freed ones are kept for the next p2p call, so
// tppp_isend/irecv/send/recv allocate nothing after the first calls (with
// the UCX transport's pooled requests). It keeps the transport alive while
// a request lives, after tppp_group_destroy too (c_api.h), and goes with the
// last one. No atomics: calls on a group and its requests are serialised by
// the host (c_api.h, thread safety).
struct RequestHome {
  std::shared_ptr<tppp::Transport> transport;
  std::vector<tppp_request_s*> free;  // handles to reuse; capacity >= made, so a free never allocates
  size_t made = 0;                    // handles ever made
  size_t live = 0;                    // handed out, not yet freed
  bool group_gone = false;
  ~RequestHome() {
    for (tppp_request_s* r : free) delete r;
  }
};

void group_gone(RequestHome* home) noexcept {
  if (!home) return;
  home->group_gone = true;
  if (home->live == 0) delete home;
}

}  // namespace tppp_shim

namespace {

using tppp_shim::check_peer;
using tppp_shim::live;

void check_buf(const void* p, size_t bytes, const char* op, const char* name) {
  REQUIRE(bytes <= static_cast<size_t>(PTRDIFF_MAX), "%s: %s of %zu bytes is larger than any buffer (a negative size?)",
          op, name, bytes);
  REQUIRE(p || bytes == 0, "%s: %s is NULL but %zu bytes were asked for", op, name, bytes);
}

size_t checked_bytes(size_t count, size_t es, const char* op) {
  REQUIRE(count <= SIZE_MAX / 64 / es, "%s: count %zu overflows", op, count);
  return count * es;
}

// The first handles of a group (and more when more are in flight than ever
// before): out of line, so the hot path stays a pop from the free list.
__attribute__((noinline)) tppp_request_s* new_handle(tppp_group_t g) {
  tppp_shim::RequestHome*& home = g->requests;
  if (!home) {
    home = new tppp_shim::RequestHome();
    home->transport = g->g->transport_ptr();
  }
  home->free.reserve(home->made + 1);  // before the handle exists: nothing to leak if it throws
  tppp_request_s* h = new tppp_request_s();
  h->home = home;
  home->made++;
  return h;
}

tppp_status make_request(tppp_group_t g, tppp::RequestPtr r, tppp_request_t* out) {
  tppp_shim::RequestHome* home = g->requests;
  tppp_request_s* h;
  if (home && !home->free.empty()) {
    h = home->free.back();
    home->free.pop_back();
  } else {
    h = new_handle(g);
    home = h->home;
  }
  h->r = r.release();
  h->result = TPPP_ERR_IN_PROGRESS;
  home->live++;
  *out = h;
  return TPPP_OK;
}

// The last request of a destroyed group is freed: the handles go, and the
// transport with them. Out of line: tppp_request_free stays a few stores.
__attribute__((noinline)) void last_request_gone(tppp_request_t r, tppp_shim::RequestHome* home) noexcept {
  delete r;
  delete home;
}

// Drives a request to a final result, remembering it (a failure's message
// too, repeated on later calls). Out of line: tppp_request_wait and _test
// first read the transport's ok flag, the hot path.
__attribute__((noinline)) tppp_status finish(tppp_request_t r, bool block, int32_t* done) {
  if (r->result == TPPP_ERR_IN_PROGRESS) {
    try {
      bool ok = true;
      if (block)
        r->r->wait();
      else
        ok = r->r->test();
      if (!ok) {
        if (done) *done = 0;
        return TPPP_OK;
      }
      r->result = TPPP_OK;
    } catch (const tppp::Error& e) {
      r->result = e.status();
      r->message = e.what();
    }
  }
  if (done) *done = 1;
  if (r->result != TPPP_OK) tppp::fail(r->result, "%s", r->message.c_str());
  return TPPP_OK;
}

// Where a call's buffers live: host for CPU groups; for CUDA groups asked of
// CUDA, and both buffers of a collective must be on the same side.
tppp::Place place_of(tppp::Group& g, const void* a, const void* b, void* stream, const char* op) {
  if (g.mem_kind() == TPPP_MEM_HOST) return tppp::Place{TPPP_MEM_HOST, stream};
  const bool da = a && tppp::is_device_pointer(a), db = b && tppp::is_device_pointer(b);
  REQUIRE(!(a && b) || da == db,
          "%s: one buffer is in device memory and the other in host memory; pass both on the same side", op);
  return tppp::Place{da || db ? TPPP_MEM_CUDA : TPPP_MEM_HOST, stream};
}

// A collective's argument checks: a failure also counts the call and tells
// the comm's other ranks (transport.hpp, collective_failed), so their call
// fails too instead of pairing with this rank's next one.
template <typename Checks>
tppp::Place checked(tppp::Group& G, const tppp::Comm& c, Checks&& checks) {
  try {
    return checks();
  } catch (const tppp::Error& e) {
    G.transport().collective_failed(c, e.status());
    throw;
  }
}

}  // namespace

extern "C" {

tppp_status tppp_isend(tppp_group_t g, int32_t scope, int32_t peer, int32_t tag, const void* buf, size_t bytes,
                       void* stream, tppp_request_t* out) {
  API_BEGIN
  REQUIRE(out, "tppp_isend: out is NULL");
  tppp::Group& G = live(g, "tppp_isend");
  const tppp::Comm& c = G.comm(scope);
  check_peer(c, peer, "tppp_isend");
  REQUIRE(tag >= 0, "tppp_isend: tag %d is negative", tag);
  check_buf(buf, bytes, "tppp_isend", "buf");
  return make_request(g, G.transport().isend(c, peer, static_cast<uint32_t>(tag), buf, bytes, place_of(G, buf, nullptr, stream, "tppp_isend")), out);
  API_END
}

tppp_status tppp_irecv(tppp_group_t g, int32_t scope, int32_t peer, int32_t tag, void* buf, size_t bytes,
                       void* stream, tppp_request_t* out) {
  API_BEGIN
  REQUIRE(out, "tppp_irecv: out is NULL");
  tppp::Group& G = live(g, "tppp_irecv");
  const tppp::Comm& c = G.comm(scope);
  check_peer(c, peer, "tppp_irecv");
  REQUIRE(tag >= 0, "tppp_irecv: tag %d is negative", tag);
  check_buf(buf, bytes, "tppp_irecv", "buf");
  return make_request(g, G.transport().irecv(c, peer, static_cast<uint32_t>(tag), buf, bytes, place_of(G, buf, nullptr, stream, "tppp_irecv")), out);
  API_END
}

tppp_status tppp_request_test(tppp_request_t r, int32_t* done) {
  if (r && done && r->r->ok) {  // the hot path: finished fine, nothing to check
    *done = 1;
    return TPPP_OK;
  }
  API_BEGIN
  REQUIRE(r, "tppp_request_test: request is NULL");
  REQUIRE(done, "tppp_request_test: done is NULL");
  return finish(r, false, done);
  API_END
}

tppp_status tppp_request_wait(tppp_request_t r) {
  if (r && r->r->ok) return TPPP_OK;  // the hot path: finished fine, nothing to check
  API_BEGIN
  REQUIRE(r, "tppp_request_wait: request is NULL");
  return finish(r, true, nullptr);
  API_END
}

void tppp_request_free(tppp_request_t r) {
  if (!r) return;
  r->r->release();  // noexcept; cancels a pending operation
  tppp_shim::RequestHome* home = r->home;
  if (--home->live == 0 && home->group_gone)
    last_request_gone(r, home);
  else
    home->free.push_back(r);  // never allocates: capacity >= every handle made (new_handle)
}

tppp_status tppp_send(tppp_group_t g, int32_t scope, int32_t peer, int32_t tag, const void* buf, size_t bytes,
                      void* stream) {
  tppp_request_t r = nullptr;
  tppp_status s = tppp_isend(g, scope, peer, tag, buf, bytes, stream, &r);
  if (s != TPPP_OK) return s;
  s = tppp_request_wait(r);
  tppp_request_free(r);
  return s;
}

tppp_status tppp_recv(tppp_group_t g, int32_t scope, int32_t peer, int32_t tag, void* buf, size_t bytes,
                      void* stream) {
  tppp_request_t r = nullptr;
  tppp_status s = tppp_irecv(g, scope, peer, tag, buf, bytes, stream, &r);
  if (s != TPPP_OK) return s;
  s = tppp_request_wait(r);
  tppp_request_free(r);
  return s;
}

tppp_status tppp_all_reduce(tppp_group_t g, int32_t scope, const void* send, void* recv, size_t count,
                            int32_t dtype, int32_t op, void* stream) {
  API_BEGIN
  tppp::Group& G = live(g, "tppp_all_reduce");
  const tppp::Comm& c = G.comm(scope);
  const tppp::Place at = checked(G, c, [&] {
    size_t bytes = checked_bytes(count, esize(dtype, "tppp_all_reduce"), "tppp_all_reduce");
    REQUIRE(op >= TPPP_OP_SUM && op <= TPPP_OP_MIN, "tppp_all_reduce: op %d is not a TPPP_OP_* value", op);
    check_buf(send, bytes, "tppp_all_reduce", "send");
    check_buf(recv, bytes, "tppp_all_reduce", "recv");
    return place_of(G, send, recv, stream, "all_reduce");
  });
  G.transport().all_reduce(c, send, recv, count, dtype, op, at);
  API_END
}

tppp_status tppp_all_gather(tppp_group_t g, int32_t scope, const void* send, void* recv, size_t count,
                            int32_t dtype, void* stream) {
  API_BEGIN
  tppp::Group& G = live(g, "tppp_all_gather");
  const tppp::Comm& c = G.comm(scope);
  const tppp::Place at = checked(G, c, [&] {
    size_t bytes = checked_bytes(count, esize(dtype, "tppp_all_gather"), "tppp_all_gather");
    check_buf(send, bytes, "tppp_all_gather", "send");
    check_buf(recv, bytes, "tppp_all_gather", "recv");
    return place_of(G, send, recv, stream, "all_gather");
  });
  G.transport().all_gather(c, send, recv, count, dtype, at);
  API_END
}

tppp_status tppp_broadcast(tppp_group_t g, int32_t scope, void* buf, size_t count, int32_t dtype, int32_t root,
                           void* stream) {
  API_BEGIN
  tppp::Group& G = live(g, "tppp_broadcast");
  const tppp::Comm& c = G.comm(scope);
  const tppp::Place at = checked(G, c, [&] {
    size_t bytes = checked_bytes(count, esize(dtype, "tppp_broadcast"), "tppp_broadcast");
    REQUIRE(root >= 0 && root < c.size(), "tppp_broadcast: root %d is outside the %s group of size %d", root, c.name,
            c.size());
    check_buf(buf, bytes, "tppp_broadcast", "buf");
    return place_of(G, buf, nullptr, stream, "broadcast");
  });
  G.transport().broadcast(c, buf, count, dtype, root, at);
  API_END
}

tppp_status tppp_barrier(tppp_group_t g, int32_t scope) {
  API_BEGIN
  tppp::Group& G = live(g, "tppp_barrier");
  G.transport().barrier(G.comm(scope));
  API_END
}

}  // extern "C"
