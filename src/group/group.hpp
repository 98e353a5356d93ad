// A process group: this rank's place in the TP x PP grid (docs/DESIGN.md
// section 2), the world/TP/PP communicators, and the backend and transport
// that serve them (built through their registries). The tier between the
// seams below (backend, transport) and the users above (loader, layers,
// pipeline, model, C shims).
// Layout: global_rank = pp_rank * tp + tp_rank (TP groups contiguous, PP
// groups strided by tp), as in Megatron, vLLM and SGLang.
#pragma once
#include <atomic>
#include <memory>
#include <mutex>
#include <string>

#include "backend/backend.hpp"
#include "c_api.h"
#include "core/bootstrap.hpp"
#include "transport/transport.hpp"

namespace tppp {

struct GroupConfig {
  int world = 1, rank = 0, local_rank = -1;
  int tp = 1, pp = 1;
  int device = TPPP_DEVICE_CPU;
  int transport = TPPP_TRANSPORT_AUTO;
  int timeout_ms = 60000;
};

// Throws INVALID_ARGUMENT naming the first bad field.
void validate_group_config(const GroupConfig& c);

// Pure grid arithmetic (tested without processes).
struct GridPos {
  int tp_rank, pp_rank, prev_stage, next_stage;  // prev/next: global ranks or -1
};
GridPos grid_position(int rank, int tp, int pp);
Comm make_comm(int scope, int rank, int tp, int pp);  // TPPP_SCOPE_*

class Group {
 public:
  // Forms the group: bootstrap (listener valid on rank 0), then the transport.
  Group(const GroupConfig& cfg, const BootstrapAddr& addr, Fd listener);

  const GroupConfig& config() const { return cfg_; }
  const GridPos& pos() const { return pos_; }
  // Throws INVALID_ARGUMENT for a scope that is not TPPP_SCOPE_*. Inline:
  // every p2p call asks it (the hot path).
  const Comm& comm(int32_t scope) const {
    if (scope == TPPP_SCOPE_WORLD) return world_;
    if (scope == TPPP_SCOPE_TP) return tp_;
    if (scope == TPPP_SCOPE_PP) return pp_;
    bad_scope(scope);
  }
  Transport& transport() { return *transport_; }
  const std::shared_ptr<Transport>& transport_ptr() const { return transport_; }
  const std::shared_ptr<std::atomic<int>>& abort_flag() const { return abort_; }
  // Where the group's activations live: the backend's memory kind (host for
  // CPU groups, TPPP_MEM_CUDA for CUDA groups), without creating the backend.
  int32_t mem_kind() const { return cfg_.device == TPPP_DEVICE_CPU ? TPPP_MEM_HOST : TPPP_MEM_CUDA; }

  // The group's compute backend (created on first use, shared by its layers).
  std::shared_ptr<Backend> backend();

  // Throws ABORTED once tppp_group_abort has been called.
  void check_live(const char* op) const {
    if (abort_->load()) aborted(op);
  }
  void abort() noexcept;

 private:
  [[noreturn]] void bad_scope(int32_t scope) const;
  [[noreturn]] void aborted(const char* op) const;
  GroupConfig cfg_;
  GridPos pos_;
  Comm world_, tp_, pp_;
  std::shared_ptr<std::atomic<int>> abort_;
  std::shared_ptr<Transport> transport_;
  std::mutex be_mu_;
  std::shared_ptr<Backend> backend_;
};

}  // namespace tppp
