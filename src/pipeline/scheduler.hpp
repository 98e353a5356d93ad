// The micro-batch runtime: replays this stage's part of a Plan, calling the
// host's stage function (or a built-in stack of TP layers) for FORWARD,
// moving activations over the PP scope with receives posted ahead and sends
// left in flight, so transfers overlap compute. Each TP rank sends only its
// 1/tp of an activation; the next stage all-gathers it over TP. A small
// header (status, rows) precedes every activation so a failed stage is
// reported downstream instead of being waited for.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "c_api.h"
#include "pipeline/plan.hpp"

namespace tppp {

class Group;
class TpLayer;

struct SchedulerConfig {
  Policy policy = Policy::FillDrain;
  int32_t microbatches = 1;
  int32_t steps = 1;       // decode ring
  int32_t dtype = TPPP_DTYPE_F32;
  int64_t hidden = 0;      // activation columns
};

// Returns 0, or a code that fails the run on every stage.
using StageFn = std::function<int32_t(int32_t mb, int32_t step, const tppp_tensor& in, const tppp_tensor& out)>;

struct StageStats {
  int32_t stage = 0, microbatches = 0, steps = 1;
  double wall_ms = 0, busy_ms = 0, idle_ms = 0;
  double bubble = 0, theory_bubble = 0;  // idle / wall, and the plan's ideal
};

class Scheduler {
 public:
  Scheduler(Group& g, const SchedulerConfig& c);
  void set_stage_fn(StageFn f) { fn_ = std::move(f); }
  void add_layer(TpLayer* l) { layers_.push_back(l); }
  const Plan& plan() const { return plan_; }
  // Stage 0 passes in [rows, hidden] (every TP rank the same); the last
  // stage passes out [rows, hidden]; other stages pass NULL.
  void run(const tppp_tensor* in, const tppp_tensor* out);
  const StageStats& stats() const { return stats_; }
  // Collective over the world: rank 0 writes one Chrome trace, a track per rank.
  void write_trace(const std::string& path);

 private:
  int32_t forward(int32_t mb, int32_t step, const tppp_tensor& in, const tppp_tensor& out);
  Group& g_;
  SchedulerConfig c_;
  Plan plan_;
  StageFn fn_;
  std::vector<TpLayer*> layers_;
  StageStats stats_;
  struct Event {
    std::string name;
    double ts_us, dur_us;
  };
  std::vector<Event> events_;
  std::vector<std::vector<char>> ibuf_, obuf_;  // [mb] -> activation bytes
  std::vector<char> stack_scratch_[2];          // built-in layer stack intermediates
};

}  // namespace tppp
