// The micro-batch runtime: replays this stage's part of a Plan, calling the
// host's stage function (or a built-in stack of TP layers) for FORWARD,
// moving activations over the PP scope with receives posted ahead and sends
// left in flight, so transfers overlap compute. Each TP rank sends only its
// 1/tp of an activation; the next stage all-gathers it over TP. A small
// header (status, rows) precedes every activation so a failed stage is
// reported downstream instead of being waited for. On a CUDA group the
// activations live in device memory: compute runs on the caller's stream,
// transfers on a communication stream of the scheduler's, ordered with
// events; over NCCL nothing waits on the host per micro-batch (one wait at
// the end of the run).
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "c_api.h"
#include "pipeline/plan.hpp"

namespace tppp {

class Backend;
class Group;
class TpLayer;

struct SchedulerConfig {
  Policy policy = Policy::FillDrain;
  int32_t microbatches = 1;
  int32_t steps = 1;       // decode ring
  int32_t dtype = TPPP_DTYPE_F32;
  int64_t hidden = 0;      // activation columns
  void* stream = nullptr;  // CUDA groups: the compute stream (stage functions use it); nullptr: the default
};

// An activation buffer in the group's backend memory (device memory on CUDA
// groups), grown to the largest size asked and then reused.
class ActBuf {
 public:
  ActBuf() = default;
  ActBuf(ActBuf&& o) noexcept : be_(o.be_), p_(o.p_), n_(o.n_) { o.p_ = nullptr, o.n_ = 0; }
  ActBuf(const ActBuf&) = delete;
  ActBuf& operator=(const ActBuf&) = delete;
  ~ActBuf();
  char* get(Backend& be, size_t bytes);  // at least bytes; contents kept only if it does not grow
  char* data() const { return static_cast<char*>(p_); }

 private:
  Backend* be_ = nullptr;
  void* p_ = nullptr;
  size_t n_ = 0;
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
  ~Scheduler();
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
  std::shared_ptr<Backend> be_;  // the group's; kept for the streams and events below
  Plan plan_;
  StageFn fn_;
  std::vector<TpLayer*> layers_;
  StageStats stats_;
  struct Event {
    std::string name;
    double ts_us, dur_us;
  };
  std::vector<Event> events_;
  std::vector<ActBuf> ibuf_, obuf_;  // [mb] -> activation [rows_mb, hidden], backend memory
  ActBuf stack_scratch_[2];          // built-in layer stack intermediates
  // CUDA groups: the communication stream and, per micro-batch, events:
  // input arrived (comm -> compute), output made (compute -> comm), output
  // sent (comm -> compute, before the buffer is written again).
  void* comm_ = nullptr;
  std::vector<void*> ev_in_, ev_out_, ev_sent_;
};

}  // namespace tppp
