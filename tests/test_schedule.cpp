// Plans as plain data, for P in 1..8 and M in 1..16 and both policies:
// every micro-batch forwarded exactly once per stage per step, in order;
// every send matched by one receive; no order that can deadlock.
#include <doctest/doctest.h>

#include <map>
#include <tuple>

#include "core/error.hpp"
#include "pipeline/plan.hpp"

using tppp::Act;

TEST_SUITE("schedule") {
  TEST_CASE("plan properties for P in 1..8, M in 1..16, both policies") {
    for (int P = 1; P <= 8; P++)
      for (int M = 1; M <= 16; M++)
        for (tppp::Policy pol : {tppp::Policy::FillDrain, tppp::Policy::DecodeRing}) {
          const int steps = pol == tppp::Policy::FillDrain ? 1 : 3;
          tppp::Plan p = tppp::plan(P, M, pol, steps);
          CAPTURE(P);
          CAPTURE(M);
          CAPTURE(static_cast<int>(pol));
          REQUIRE(p.actions.size() == static_cast<size_t>(P));
          std::map<std::tuple<int, int, int, int>, int> sends, recvs;  // (from, to, mb, step)
          for (int s = 0; s < P; s++) {
            int next_mb = 0, next_step = 0;
            for (const tppp::Action& a : p.actions[static_cast<size_t>(s)]) {
              if (a.act == Act::Forward) {  // in order: step-major, then micro-batch
                CHECK(a.mb == next_mb);
                CHECK(a.step == next_step);
                if (++next_mb == M) {
                  next_mb = 0;
                  next_step++;
                }
              }
              if (a.act == Act::Send) sends[{s, s + 1, a.mb, a.step}]++;
              if (a.act == Act::SendRing) sends[{s, 0, a.mb, a.step}]++;
              if (a.act == Act::Recv) recvs[{s - 1, s, a.mb, a.step}]++;
              if (a.act == Act::RecvRing) recvs[{P - 1, s, a.mb, a.step}]++;
              CHECK(!(a.act == Act::Send && s == P - 1));
              CHECK(!(a.act == Act::Recv && s == 0));
            }
            CHECK(next_mb == 0);
            CHECK(next_step == p.steps);  // every micro-batch forwarded once per step
          }
          CHECK(sends == recvs);  // every send matched by exactly one receive
          for (auto& kv : sends) CHECK(kv.second == 1);
          CHECK(tppp::check_deadlock_free(p) == "");
          if (pol == tppp::Policy::FillDrain) CHECK(p.theory_bubble() == doctest::Approx(double(P - 1) / (M + P - 1)));
        }
  }

  TEST_CASE("the deadlock check catches a bad order") {
    tppp::Plan p = tppp::plan(2, 2, tppp::Policy::FillDrain);
    // Stage 1 waits for micro-batch 1 before 0 while stage 0 sends 0 first: still fine with
    // async sends. Make stage 0 receive something nobody sends.
    p.actions[0].insert(p.actions[0].begin(), tppp::Action{Act::RecvRing, 0, 0});
    CHECK(tppp::check_deadlock_free(p).find("stage 0 stuck") != std::string::npos);
  }

  TEST_CASE("bad plan arguments") {
    CHECK_THROWS_AS(tppp::plan(0, 1, tppp::Policy::FillDrain), tppp::Error);
    CHECK_THROWS_AS(tppp::plan(2, 0, tppp::Policy::FillDrain), tppp::Error);
    CHECK_THROWS_AS(tppp::plan(2, 2, tppp::Policy::DecodeRing, 0), tppp::Error);
  }
}

#include "transport/tags.hpp"

TEST_SUITE("schedule") {
  TEST_CASE("library tags never meet a host tag, and owners never meet each other") {
    using namespace tppp::tags;
    for (int64_t step : {0, 1, 7, 1000000})
      for (int64_t mb : {0, 3, 15})
        for (PipeMsg k : {PipeMsg::Head, PipeMsg::Data, PipeMsg::RingHead, PipeMsg::RingData}) {
          const uint32_t t = pipeline(step, mb, 16, k);
          CHECK(t > kHostMax);                         // bit 31: the library's space
          CHECK((t >> kOwnerShift & 3u) == static_cast<uint32_t>(Owner::Pipeline));
        }
    CHECK(lm_head_gather(7) > kHostMax);
    CHECK((lm_head_gather(7) >> kOwnerShift & 3u) == static_cast<uint32_t>(Owner::Layers));
    CHECK(lm_head_gather(7) != lm_head_gather(8));
    CHECK(pipeline(2, 1, 4, PipeMsg::Data) != pipeline(2, 1, 4, PipeMsg::Head));
    CHECK(pipeline(2, 1, 4, PipeMsg::Data) != pipeline(2, 2, 4, PipeMsg::Data));
  }
}
