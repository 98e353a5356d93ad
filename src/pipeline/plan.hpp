// Micro-batch schedules as plain data (docs/DESIGN.md section 6): plan() is pure and
// returns, per stage, the ordered actions the runtime replays. Tested without
// processes: every micro-batch forwarded once per stage in order, every send
// matched by a receive, and no order that can deadlock when sends are
// asynchronous and receives block.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace tppp {

enum class Policy : int32_t {
  FillDrain = 0,  // GPipe forward: micro-batches stream through the stages
  DecodeRing = 1, // the last stage returns each micro-batch to the first for
                  // the next step (sampled tokens); M >= P keeps all busy
};

enum class Act : int32_t {
  Recv = 0,      // from the previous stage
  Forward = 1,
  Send = 2,      // to the next stage
  RecvRing = 3,  // stage 0, steps > 0: from the last stage
  SendRing = 4,  // last stage, all but the last step: to stage 0
};

struct Action {
  Act act;
  int32_t mb;    // micro-batch
  int32_t step;  // decode step (0 for fill-drain)
  bool operator==(const Action& o) const { return act == o.act && mb == o.mb && step == o.step; }
};

struct Plan {
  int32_t stages = 1, microbatches = 1, steps = 1;
  Policy policy = Policy::FillDrain;
  std::vector<std::vector<Action>> actions;  // [stage][i]
  // Forward slots of the ideal schedule with equal stage times:
  // bubble = (P-1)/(M+P-1) for fill-drain; 1 - min(M,P)/P idle for the ring.
  double theory_bubble() const;
};

// Throws INVALID_ARGUMENT for P < 1, M < 1 or steps < 1.
Plan plan(int32_t stages, int32_t microbatches, Policy policy, int32_t steps = 1);

// Replays the plan with async sends and blocking receives; returns an empty
// string when every stage finishes, else a description of the stuck state.
std::string check_deadlock_free(const Plan& p);

const char* act_name(Act a);

}  // namespace tppp
