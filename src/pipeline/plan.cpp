// Schedule construction and the deadlock check.
#include "pipeline/plan.hpp"

#include <algorithm>
#include <map>
#include <set>
#include <tuple>

#include "c_api.h"
#include "core/error.hpp"

namespace tppp {

const char* act_name(Act a) {
  switch (a) {
    case Act::Recv: return "RECV";
    case Act::Forward: return "FORWARD";
    case Act::Send: return "SEND";
    case Act::RecvRing: return "RECV_RING";
    case Act::SendRing: return "SEND_RING";
  }
  return "?";
}

double Plan::theory_bubble() const {
  const double P = stages, M = microbatches;
  if (policy == Policy::FillDrain) return (P - 1) / (M + P - 1);
  return 1.0 - std::min(M, P) / P;
}

Plan plan(int32_t P, int32_t M, Policy policy, int32_t steps) {
  if (P < 1 || M < 1 || steps < 1)
    fail(TPPP_ERR_INVALID_ARGUMENT, "plan: stages %d, micro-batches %d and steps %d must be >= 1", P, M, steps);
  if (policy != Policy::FillDrain && policy != Policy::DecodeRing)
    fail(TPPP_ERR_INVALID_ARGUMENT, "plan: policy %d is not a TPPP_POLICY_*", static_cast<int>(policy));
  Plan p;
  p.stages = P;
  p.microbatches = M;
  p.policy = policy;
  p.steps = policy == Policy::FillDrain ? 1 : steps;
  p.actions.resize(static_cast<size_t>(P));
  for (int32_t t = 0; t < p.steps; t++) {
    for (int32_t m = 0; m < M; m++) {
      for (int32_t s = 0; s < P; s++) {
        auto& a = p.actions[static_cast<size_t>(s)];
        if (s == 0 && t > 0 && P > 1) a.push_back({Act::RecvRing, m, t - 1});
        if (s > 0) a.push_back({Act::Recv, m, t});
        a.push_back({Act::Forward, m, t});
        if (s < P - 1) a.push_back({Act::Send, m, t});
        if (s == P - 1 && t + 1 < p.steps && P > 1) a.push_back({Act::SendRing, m, t});
      }
    }
  }
  return p;
}

std::string check_deadlock_free(const Plan& p) {
  const int32_t P = p.stages;
  std::vector<size_t> pc(static_cast<size_t>(P), 0);
  // Messages sent and not yet received: (from, to, mb, step).
  std::multiset<std::tuple<int, int, int, int>> wire;
  bool moved = true;
  while (moved) {
    moved = false;
    for (int32_t s = 0; s < P; s++) {
      auto& acts = p.actions[static_cast<size_t>(s)];
      while (pc[static_cast<size_t>(s)] < acts.size()) {
        const Action& a = acts[pc[static_cast<size_t>(s)]];
        if (a.act == Act::Recv || a.act == Act::RecvRing) {
          int from = a.act == Act::Recv ? s - 1 : P - 1;
          auto it = wire.find(std::make_tuple(from, static_cast<int>(s), a.mb, a.step));
          if (it == wire.end()) break;  // blocks until the send happens
          wire.erase(it);
        } else if (a.act == Act::Send || a.act == Act::SendRing) {
          int to = a.act == Act::Send ? s + 1 : 0;
          wire.insert(std::make_tuple(static_cast<int>(s), to, a.mb, a.step));
        }
        pc[static_cast<size_t>(s)]++;
        moved = true;
      }
    }
  }
  for (int32_t s = 0; s < P; s++) {
    const auto& acts = p.actions[static_cast<size_t>(s)];
    if (pc[static_cast<size_t>(s)] < acts.size()) {
      const Action& a = acts[pc[static_cast<size_t>(s)]];
      return strf("stage %d stuck at %s mb %d step %d", s, act_name(a.act), a.mb, a.step);
    }
  }
  if (!wire.empty()) return strf("%zu messages sent but never received", wire.size());
  return std::string();
}

}  // namespace tppp
