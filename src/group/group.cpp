// Group formation and the rank grid.
#include "group/group.hpp"

#include "core/env.hpp"
#include "core/error.hpp"
#include "core/netif.hpp"
#include "core/log.hpp"
#include "cuda/device.hpp"

namespace tppp {

void validate_group_config(const GroupConfig& c) {
  if (c.world <= 0) fail(TPPP_ERR_INVALID_ARGUMENT, "world_size must be positive, got %d", c.world);
  if (c.world > 65535) fail(TPPP_ERR_INVALID_ARGUMENT, "world_size %d exceeds the limit of 65535", c.world);
  if (c.rank < 0 || c.rank >= c.world)
    fail(TPPP_ERR_INVALID_ARGUMENT, "rank %d is outside [0, world_size=%d)", c.rank, c.world);
  if (c.tp <= 0 || c.pp <= 0)
    fail(TPPP_ERR_INVALID_ARGUMENT, "tp_size (%d) and pp_size (%d) must be positive", c.tp, c.pp);
  if (static_cast<long long>(c.tp) * c.pp != c.world)
    fail(TPPP_ERR_INVALID_ARGUMENT, "tp_size * pp_size = %d * %d = %lld does not equal world_size %d", c.tp, c.pp,
         static_cast<long long>(c.tp) * c.pp, c.world);
  if (c.timeout_ms <= 0) fail(TPPP_ERR_INVALID_ARGUMENT, "timeout_ms must be positive, got %d", c.timeout_ms);
  if (c.transport < TPPP_TRANSPORT_AUTO || c.transport > TPPP_TRANSPORT_NCCL)
    fail(TPPP_ERR_INVALID_ARGUMENT, "transport %d is not a TPPP_TRANSPORT_* value", c.transport);
  if (c.device < TPPP_DEVICE_CPU) fail(TPPP_ERR_INVALID_ARGUMENT, "device %d is neither CPU (-1) nor a CUDA ordinal",
                                       c.device);
}

GridPos grid_position(int rank, int tp, int pp) {
  GridPos p;
  p.tp_rank = rank % tp;
  p.pp_rank = rank / tp;
  p.prev_stage = p.pp_rank > 0 ? rank - tp : -1;
  p.next_stage = p.pp_rank < pp - 1 ? rank + tp : -1;
  return p;
}

Comm make_comm(int scope, int rank, int tp, int pp) {
  Comm c;
  GridPos p = grid_position(rank, tp, pp);
  switch (scope) {
    case TPPP_SCOPE_WORLD:
      c.id = CommId::World;
      c.name = "world";
      for (int r = 0; r < tp * pp; r++) c.ranks.push_back(r);
      c.me = rank;
      break;
    case TPPP_SCOPE_TP:
      c.id = CommId::Tp;
      c.name = "tp";
      for (int t = 0; t < tp; t++) c.ranks.push_back(p.pp_rank * tp + t);
      c.me = p.tp_rank;
      break;
    case TPPP_SCOPE_PP:
      c.id = CommId::Pp;
      c.name = "pp";
      for (int s = 0; s < pp; s++) c.ranks.push_back(s * tp + p.tp_rank);
      c.me = p.pp_rank;
      break;
    default:
      fail(TPPP_ERR_INVALID_ARGUMENT, "scope %d is not TPPP_SCOPE_WORLD, _TP or _PP", scope);
  }
  return c;
}

Group::Group(const GroupConfig& cfg, const BootstrapAddr& addr, Fd listener)
    : cfg_(cfg), abort_(std::make_shared<std::atomic<int>>(0)) {
  validate_group_config(cfg_);
  if (cfg_.device != TPPP_DEVICE_CPU) check_cuda_device(cfg_.device);
  pos_ = grid_position(cfg_.rank, cfg_.tp, cfg_.pp);
  world_ = make_comm(TPPP_SCOPE_WORLD, cfg_.rank, cfg_.tp, cfg_.pp);
  tp_ = make_comm(TPPP_SCOPE_TP, cfg_.rank, cfg_.tp, cfg_.pp);
  pp_ = make_comm(TPPP_SCOPE_PP, cfg_.rank, cfg_.tp, cfg_.pp);
  JoinConfig jc;
  jc.world = cfg_.world;
  jc.rank = cfg_.rank;
  jc.tp = cfg_.tp;
  jc.pp = cfg_.pp;
  jc.timeout_ms = cfg_.timeout_ms;
  jc.secret = env_str(Env::GroupSecret);
  std::unique_ptr<Bootstrap> bs = Bootstrap::join(addr, std::move(listener), jc);
  TransportConfig tc;
  tc.world = cfg_.world;
  tc.rank = cfg_.rank;
  tc.tp = cfg_.tp;
  tc.pp = cfg_.pp;
  tc.timeout_ms = cfg_.timeout_ms;
  tc.device = cfg_.device;
  tc.abort_flag = abort_;
  const NetIf nic = interface_toward(addr.ip_be);
  if (!nic.loopback) tc.net_device = nic.name;
  transport_ = create_transport(cfg_.transport, *bs, tc);
  TPPP_LOG(TPPP_LOG_INFO, "rank %d/%d (tp %d/%d, pp %d/%d) joined over %s", cfg_.rank, cfg_.world, pos_.tp_rank,
           cfg_.tp, pos_.pp_rank, cfg_.pp, transport_->name());
}

void Group::bad_scope(int32_t scope) const {
  fail(TPPP_ERR_INVALID_ARGUMENT, "scope %d is not TPPP_SCOPE_WORLD, _TP or _PP", scope);
}

std::shared_ptr<Backend> Group::backend() {
  std::lock_guard<std::mutex> lk(be_mu_);
  if (!backend_) backend_ = create_backend(cfg_.device, cfg_.timeout_ms);
  return backend_;
}

void Group::aborted(const char* op) const {
  fail(TPPP_ERR_ABORTED, "rank %d: %s on an aborted group (tppp_group_abort was called)", cfg_.rank, op);
}

void Group::abort() noexcept {
  abort_->store(1);
  if (transport_) transport_->abort();
}

}  // namespace tppp
