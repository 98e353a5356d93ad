// extern "C" shims of process groups: params, unique ids, create (from an
// id or a launcher's environment), abort, async errors, info and scopes.
#include <cstring>
#include <string>

#include "c_api.h"
#include "c_api/handles.hpp"
#include "c_api/shim.hpp"
#include "core/bootstrap.hpp"
#include "core/env.hpp"
#include "core/error.hpp"
#include "core/launch_env.hpp"
#include "core/log.hpp"

namespace {

using tppp_shim::check_peer;

using tppp_shim::read_versioned;

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

}  // namespace

extern "C" {

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
  tppp::LaunchEnv e = tppp::read_launch_env(tppp::process_env);
  if (e.launcher == "singleton")
    TPPP_LOG(TPPP_LOG_INFO, "tppp_group_create_from_env: no launcher environment (RANK/WORLD_SIZE, OMPI_COMM_WORLD_*, "
             "SLURM_*): running as a single process, world 1, rank 0");
  tppp::GroupConfig cfg = to_config(params, e.world, e.rank, e.local_rank);
  // tp_size left at 1 with pp_size dividing the world: tp takes the rest.
  if (cfg.tp == 1 && cfg.pp > 0 && e.world % cfg.pp == 0) cfg.tp = e.world / cfg.pp;
  tppp::validate_group_config(cfg);
  tppp::BootstrapAddr addr;
  addr.ip_be = tppp::resolve_ipv4(e.master_addr);
  addr.port = e.port;
  addr.magic = e.magic;
  tppp::Fd listener;
  if (e.rank == 0) listener = tppp::listen_root(addr.ip_be, e.port, nullptr);
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

}  // extern "C"
