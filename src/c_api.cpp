// extern "C" shims: check arguments, call into the C++ core, catch every
// exception and turn it into a status plus the thread-local last error
// (onnxruntime's API_IMPL_BEGIN/END). No C++ exception crosses this file.
#include "c_api.h"

#include <cstdlib>
#include <cstring>
#include <new>
#include <string>

#include "core/bootstrap.hpp"
#include "core/dtype.hpp"
#include "core/error.hpp"
#include "core/group.hpp"
#include "core/launch_env.hpp"
#include "core/log.hpp"
#include "c_api_internal.hpp"

#include "c_api_handles.hpp"

struct tppp_request_s {
  std::shared_ptr<tppp::Transport> keep;  // the transport outlives the request
  std::shared_ptr<std::atomic<int>> abort;
  std::unique_ptr<tppp::Request> r;
  tppp_status result = TPPP_ERR_IN_PROGRESS;
  std::string message;  // of a failed result, repeated on later calls
};

namespace tppp_shim {
std::string& last_error() {
  thread_local std::string e;
  return e;
}
}  // namespace tppp_shim

namespace {

using tppp_shim::read_versioned;
using tppp_shim::set_error;

void default_params(tppp_group_params* p) {
  std::memset(p, 0, sizeof *p);
  p->struct_size = sizeof *p;
  p->tp_size = 1;
  p->pp_size = 1;
  p->device = TPPP_DEVICE_CPU;
  p->transport = TPPP_TRANSPORT_AUTO;
  p->timeout_ms = 60000;
}

tppp::GroupConfig to_config(const tppp_group_params* params, int world, int rank, int local_rank) {
  tppp_group_params p;
  default_params(&p);
  if (params) read_versioned(params, &p, "tppp_group_params");
  tppp::GroupConfig c;
  c.world = world;
  c.rank = rank;
  c.local_rank = local_rank;
  c.tp = p.tp_size;
  c.pp = p.pp_size;
  c.device = p.device;
  c.transport = p.transport;
  c.timeout_ms = p.timeout_ms;
  return c;
}

tppp::Group& live(tppp_group_t g, const char* op) {
  REQUIRE(g && g->g, "%s: group handle is NULL", op);
  g->g->check_live(op);
  return *g->g;
}

void check_buf(const void* p, size_t bytes, const char* op, const char* name) {
  REQUIRE(p || bytes == 0, "%s: %s is NULL but %zu bytes were asked for", op, name, bytes);
}

size_t esize(int32_t dtype, const char* op) {
  REQUIRE(tppp::dtype_valid(dtype), "%s: dtype %d is not a TPPP_DTYPE_* value", op, dtype);
  return tppp::dtype_size(dtype);
}

size_t checked_bytes(size_t count, size_t es, const char* op) {
  REQUIRE(count <= SIZE_MAX / 64 / es, "%s: count %zu overflows", op, count);
  return count * es;
}

void check_peer(const tppp::Comm& c, int32_t peer, const char* op) {
  REQUIRE(peer >= 0 && peer < c.size(), "%s: peer %d is outside the %s group of size %d", op, peer, c.name,
          c.size());
}

tppp_status make_request(tppp::Group& g, std::unique_ptr<tppp::Request> r, tppp_request_t* out) {
  tppp_request_s* h = new tppp_request_s();
  h->keep = g.transport_ptr();
  h->abort = g.abort_flag();
  h->r = std::move(r);
  *out = h;
  return TPPP_OK;
}

// Drives a request to a final result, remembering it.
tppp_status finish(tppp_request_t r, bool block, int32_t* done) {
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

}  // namespace

extern "C" {

uint32_t tppp_version(void) { return TPPP_VERSION_CODE; }

int32_t tppp_abi_check(uint32_t major, uint32_t minor) {
  tppp_shim::last_error().clear();
  if (major != TPPP_VERSION_MAJOR || minor > TPPP_VERSION_MINOR)
    return set_error(TPPP_ERR_VERSION_MISMATCH,
                     tppp::strf("header version %u.%u is not served by library %d.%d.%d", major, minor,
                                TPPP_VERSION_MAJOR, TPPP_VERSION_MINOR, TPPP_VERSION_PATCH)
                         .c_str());
  return TPPP_OK;
}

const char* tppp_status_string(tppp_status s) {
  switch (s) {
    case TPPP_OK: return "TPPP_OK";
    case TPPP_ERR_INVALID_ARGUMENT: return "TPPP_ERR_INVALID_ARGUMENT";
    case TPPP_ERR_INVALID_USAGE: return "TPPP_ERR_INVALID_USAGE";
    case TPPP_ERR_OUT_OF_MEMORY: return "TPPP_ERR_OUT_OF_MEMORY";
    case TPPP_ERR_IO: return "TPPP_ERR_IO";
    case TPPP_ERR_FORMAT: return "TPPP_ERR_FORMAT";
    case TPPP_ERR_CUDA: return "TPPP_ERR_CUDA";
    case TPPP_ERR_NCCL: return "TPPP_ERR_NCCL";
    case TPPP_ERR_UCX: return "TPPP_ERR_UCX";
    case TPPP_ERR_SYSTEM: return "TPPP_ERR_SYSTEM";
    case TPPP_ERR_REMOTE: return "TPPP_ERR_REMOTE";
    case TPPP_ERR_TIMEOUT: return "TPPP_ERR_TIMEOUT";
    case TPPP_ERR_IN_PROGRESS: return "TPPP_ERR_IN_PROGRESS";
    case TPPP_ERR_ABORTED: return "TPPP_ERR_ABORTED";
    case TPPP_ERR_VERSION_MISMATCH: return "TPPP_ERR_VERSION_MISMATCH";
    case TPPP_ERR_NOT_SUPPORTED: return "TPPP_ERR_NOT_SUPPORTED";
    case TPPP_ERR_INTERNAL: return "TPPP_ERR_INTERNAL";
    default: return "TPPP_ERR_UNKNOWN_STATUS";
  }
}

const char* tppp_last_error(void) { return tppp_shim::last_error().c_str(); }

tppp_status tppp_set_log_callback(tppp_log_fn fn, void* user, int32_t max_level) {
  API_BEGIN
  REQUIRE(max_level >= TPPP_LOG_ERROR && max_level <= TPPP_LOG_DEBUG, "log level %d is not a TPPP_LOG_* value",
          max_level);
  tppp::log_set_callback(fn, user, max_level);
  API_END
}

tppp_status tppp_dtype_size(int32_t dtype, size_t* out) {
  API_BEGIN
  REQUIRE(out, "tppp_dtype_size: out is NULL");
  *out = esize(dtype, "tppp_dtype_size");
  API_END
}

tppp_status tppp_group_params_init(tppp_group_params* p, size_t size) {
  API_BEGIN
  tppp_group_params d;
  default_params(&d);
  tppp_shim::init_versioned(p, size, d, "tppp_group_params_init");
  API_END
}

tppp_status tppp_get_unique_id(tppp_unique_id* out) {
  API_BEGIN
  REQUIRE(out, "tppp_get_unique_id: out is NULL");
  tppp_unique_id id;
  tppp::make_unique_id(&id);
  *out = id;
  API_END
}

tppp_status tppp_group_create(const tppp_unique_id* id, int32_t world_size, int32_t rank,
                              const tppp_group_params* params, tppp_group_t* out) {
  API_BEGIN
  REQUIRE(id, "tppp_group_create: unique id is NULL");
  REQUIRE(out, "tppp_group_create: out is NULL");
  tppp::GroupConfig cfg = to_config(params, world_size, rank, -1);
  tppp::validate_group_config(cfg);
  tppp::BootstrapAddr addr = tppp::parse_unique_id(*id);
  tppp::Fd listener;
  if (rank == 0) {
    int fd = tppp::take_listener(addr.magic);
    REQUIRE(fd >= 0,
            "tppp_group_create (rank 0): the unique id is stale or foreign: its listener is not open in this "
            "process (ids are single-use, and rank 0 must run in the process that called tppp_get_unique_id)");
    listener.reset(fd);
  }
  std::unique_ptr<tppp_group_s> h(new tppp_group_s());
  h->g.reset(new tppp::Group(cfg, addr, std::move(listener)));
  *out = h.release();
  API_END
}

tppp_status tppp_group_create_from_env(const tppp_group_params* params, tppp_group_t* out) {
  API_BEGIN
  REQUIRE(out, "tppp_group_create_from_env: out is NULL");
  tppp::LaunchEnv e = tppp::read_launch_env([](const char* k) { return static_cast<const char*>(std::getenv(k)); });
  tppp::GroupConfig cfg = to_config(params, e.world, e.rank, e.local_rank);
  // tp_size left at 1 with pp_size dividing the world: tp takes the rest.
  if (cfg.tp == 1 && cfg.pp > 0 && e.world % cfg.pp == 0) cfg.tp = e.world / cfg.pp;
  tppp::validate_group_config(cfg);
  tppp::BootstrapAddr addr;
  addr.ip_be = tppp::resolve_ipv4(e.master_addr);
  addr.port = e.port;
  addr.magic = e.magic;
  tppp::Fd listener;
  if (e.rank == 0) listener = tppp::listen_tcp(e.port, nullptr);
  std::unique_ptr<tppp_group_s> h(new tppp_group_s());
  h->g.reset(new tppp::Group(cfg, addr, std::move(listener)));
  *out = h.release();
  API_END
}

tppp_status tppp_group_abort(tppp_group_t g) {
  API_BEGIN
  REQUIRE(g && g->g, "tppp_group_abort: group handle is NULL");
  g->g->abort();
  API_END
}

tppp_status tppp_group_get_async_error(tppp_group_t g, tppp_status* out) {
  API_BEGIN
  REQUIRE(g && g->g, "tppp_group_get_async_error: group handle is NULL");
  REQUIRE(out, "tppp_group_get_async_error: out is NULL");
  std::string msg;
  tppp_status s = g->g->transport().async_error(&msg);
  if (s == TPPP_OK && g->g->abort_flag()->load()) {
    s = TPPP_ERR_ABORTED;
    msg = "the group was aborted";
  }
  *out = s;
  if (s != TPPP_OK) tppp_shim::last_error() = msg;
  API_END
}

void tppp_group_destroy(tppp_group_t g) {
  if (!g) return;
  try {
    delete g;
  } catch (...) {
    TPPP_LOG(TPPP_LOG_ERROR, "tppp_group_destroy: an exception escaped teardown");
  }
}

tppp_status tppp_group_get_info(tppp_group_t g, tppp_group_info* out) {
  API_BEGIN
  REQUIRE(g && g->g, "tppp_group_get_info: group handle is NULL");
  REQUIRE(out, "tppp_group_get_info: out is NULL");
  const tppp::GroupConfig& c = g->g->config();
  const tppp::GridPos& p = g->g->pos();
  tppp_group_info i;
  std::memset(&i, 0, sizeof i);
  i.world_size = c.world;
  i.rank = c.rank;
  i.tp_size = c.tp;
  i.tp_rank = p.tp_rank;
  i.pp_size = c.pp;
  i.pp_rank = p.pp_rank;
  i.prev_stage_rank = p.prev_stage;
  i.next_stage_rank = p.next_stage;
  i.local_rank = c.local_rank;
  i.device = c.device;
  i.transport = g->g->transport().kind();
  i.timeout_ms = c.timeout_ms;
  tppp_shim::write_versioned(i, out, "tppp_group_info");
  API_END
}

tppp_status tppp_shard_params_from_group(tppp_group_t g, tppp_shard_params* p) {
  API_BEGIN
  REQUIRE(g && g->g, "tppp_shard_params_from_group: group handle is NULL");
  REQUIRE(p, "tppp_shard_params_from_group: params is NULL");
  REQUIRE(p->struct_size >= sizeof(uint32_t), "tppp_shard_params.struct_size is %u: call tppp_shard_params_init first",
          p->struct_size);
  tppp_shard_params v;
  std::memset(&v, 0, sizeof v);
  v.tp_size = g->g->config().tp;
  v.pp_size = g->g->config().pp;
  v.tp_rank = g->g->pos().tp_rank;
  v.pp_rank = g->g->pos().pp_rank;
  tppp_shim::write_versioned(v, p, "tppp_shard_params");
  API_END
}

tppp_status tppp_group_scope(tppp_group_t g, int32_t scope, int32_t* rank, int32_t* size) {
  API_BEGIN
  REQUIRE(g && g->g, "tppp_group_scope: group handle is NULL");
  REQUIRE(rank && size, "tppp_group_scope: rank or size is NULL");
  const tppp::Comm& c = g->g->comm(scope);
  *rank = c.me;
  *size = c.size();
  API_END
}

tppp_status tppp_group_global_rank(tppp_group_t g, int32_t scope, int32_t index, int32_t* out) {
  API_BEGIN
  REQUIRE(g && g->g, "tppp_group_global_rank: group handle is NULL");
  REQUIRE(out, "tppp_group_global_rank: out is NULL");
  const tppp::Comm& c = g->g->comm(scope);
  check_peer(c, index, "tppp_group_global_rank");
  *out = c.ranks[static_cast<size_t>(index)];
  API_END
}

tppp_status tppp_isend(tppp_group_t g, int32_t scope, int32_t peer, int32_t tag, const void* buf, size_t bytes,
                       void* stream, tppp_request_t* out) {
  API_BEGIN
  REQUIRE(out, "tppp_isend: out is NULL");
  tppp::Group& G = live(g, "tppp_isend");
  const tppp::Comm& c = G.comm(scope);
  check_peer(c, peer, "tppp_isend");
  REQUIRE(tag >= 0, "tppp_isend: tag %d is negative", tag);
  check_buf(buf, bytes, "tppp_isend", "buf");
  return make_request(G, G.transport().isend(c, peer, static_cast<uint32_t>(tag), buf, bytes, stream), out);
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
  return make_request(G, G.transport().irecv(c, peer, static_cast<uint32_t>(tag), buf, bytes, stream), out);
  API_END
}

tppp_status tppp_request_test(tppp_request_t r, int32_t* done) {
  API_BEGIN
  REQUIRE(r, "tppp_request_test: request is NULL");
  REQUIRE(done, "tppp_request_test: done is NULL");
  return finish(r, false, done);
  API_END
}

tppp_status tppp_request_wait(tppp_request_t r) {
  API_BEGIN
  REQUIRE(r, "tppp_request_wait: request is NULL");
  return finish(r, true, nullptr);
  API_END
}

void tppp_request_free(tppp_request_t r) {
  if (!r) return;
  try {
    delete r;
  } catch (...) {
    TPPP_LOG(TPPP_LOG_ERROR, "tppp_request_free: an exception escaped teardown");
  }
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
  size_t bytes = checked_bytes(count, esize(dtype, "tppp_all_reduce"), "tppp_all_reduce");
  REQUIRE(op >= TPPP_OP_SUM && op <= TPPP_OP_MIN, "tppp_all_reduce: op %d is not a TPPP_OP_* value", op);
  check_buf(send, bytes, "tppp_all_reduce", "send");
  check_buf(recv, bytes, "tppp_all_reduce", "recv");
  G.transport().all_reduce(c, send, recv, count, dtype, op, stream);
  API_END
}

tppp_status tppp_all_gather(tppp_group_t g, int32_t scope, const void* send, void* recv, size_t count,
                            int32_t dtype, void* stream) {
  API_BEGIN
  tppp::Group& G = live(g, "tppp_all_gather");
  const tppp::Comm& c = G.comm(scope);
  size_t bytes = checked_bytes(count, esize(dtype, "tppp_all_gather"), "tppp_all_gather");
  check_buf(send, bytes, "tppp_all_gather", "send");
  check_buf(recv, bytes, "tppp_all_gather", "recv");
  G.transport().all_gather(c, send, recv, count, dtype, stream);
  API_END
}

tppp_status tppp_broadcast(tppp_group_t g, int32_t scope, void* buf, size_t count, int32_t dtype, int32_t root,
                           void* stream) {
  API_BEGIN
  tppp::Group& G = live(g, "tppp_broadcast");
  const tppp::Comm& c = G.comm(scope);
  size_t bytes = checked_bytes(count, esize(dtype, "tppp_broadcast"), "tppp_broadcast");
  REQUIRE(root >= 0 && root < c.size(), "tppp_broadcast: root %d is outside the %s group of size %d", root, c.name,
          c.size());
  check_buf(buf, bytes, "tppp_broadcast", "buf");
  G.transport().broadcast(c, buf, count, dtype, root, stream);
  API_END
}

tppp_status tppp_barrier(tppp_group_t g, int32_t scope) {
  API_BEGIN
  tppp::Group& G = live(g, "tppp_barrier");
  G.transport().barrier(G.comm(scope));
  API_END
}

const tppp_api* tppp_get_api(uint32_t major, uint32_t minor) {
  static const tppp_api table = {
      sizeof(tppp_api),
      TPPP_VERSION_MAJOR,
      TPPP_VERSION_MINOR,
      TPPP_VERSION_PATCH,
      tppp_version,
      tppp_abi_check,
      tppp_status_string,
      tppp_last_error,
      tppp_set_log_callback,
      tppp_dtype_size,
      tppp_group_params_init,
      tppp_get_unique_id,
      tppp_group_create,
      tppp_group_create_from_env,
      tppp_group_abort,
      tppp_group_get_async_error,
      tppp_group_destroy,
      tppp_group_get_info,
      tppp_group_scope,
      tppp_group_global_rank,
      tppp_isend,
      tppp_irecv,
      tppp_request_test,
      tppp_request_wait,
      tppp_request_free,
      tppp_send,
      tppp_recv,
      tppp_all_reduce,
      tppp_all_gather,
      tppp_broadcast,
      tppp_barrier,
      tppp_checkpoint_open,
      tppp_checkpoint_close,
      tppp_checkpoint_num_tensors,
      tppp_checkpoint_find,
      tppp_checkpoint_tensor_info,
      tppp_checkpoint_model_config,
      tppp_shard_params_init,
      tppp_checkpoint_shard_info,
      tppp_checkpoint_validate_grid,
      tppp_checkpoint_load,
      tppp_load_params_init,
      tppp_checkpoint_load_rank,
      tppp_weights_count,
      tppp_weights_get,
      tppp_weights_find,
      tppp_weights_free,
      tppp_checkpoint_load_async,
      tppp_shard_params_from_group,
      tppp_checkpoint_load_merged,
      tppp_layer_params_init,
      tppp_layer_create,
      tppp_layer_destroy,
      tppp_layer_weight_shape,
      tppp_layer_bind,
      tppp_layer_bind_checkpoint,
      tppp_layer_forward,
      tppp_layer_argmax,
      tppp_scheduler_params_init,
      tppp_scheduler_create,
      tppp_scheduler_set_stage_fn,
      tppp_scheduler_add_layer,
      tppp_scheduler_submit,
      tppp_scheduler_poll,
      tppp_scheduler_wait,
      tppp_scheduler_run,
      tppp_scheduler_get_stats,
      tppp_scheduler_write_trace,
      tppp_scheduler_destroy,
  };
  if (major != TPPP_VERSION_MAJOR || minor > TPPP_VERSION_MINOR) return nullptr;
  return &table;
}

}  // extern "C"
