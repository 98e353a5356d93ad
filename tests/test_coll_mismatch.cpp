// Collective calls that do not pair up (transport/coll_check.hpp): a call
// one rank fails, or makes differently, must never return TPPP_OK with
// another call's data. Each case: two ranks, four all_reduce-like calls,
// the first one broken on one side; the broken call fails on both ranks
// with a status naming the other side, and the three after it pair up and
// return the right sums. The last case has four ranks and large calls (the
// hierarchical all_reduce when the multihost test spreads them over hosts).
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "core/error.hpp"
#include "harness.hpp"
#include "transport/coll_check.hpp"

namespace {

bool has(const char* hay, const char* needle) { return std::string(hay).find(needle) != std::string::npos; }

// Calls k = 0..3: rank r contributes 100 * k + r (+1 in element i); the sum is checked on every good call.
int good_call(tppp_group_t g, int rank, int k) {
  std::vector<float> x(4), y(4, -1.0f);
  for (int i = 0; i < 4; i++) x[static_cast<size_t>(i)] = static_cast<float>(100 * k + rank + i);
  RANK_OK(tppp_all_reduce(g, TPPP_SCOPE_WORLD, x.data(), y.data(), 4, TPPP_DTYPE_F32, TPPP_OP_SUM, nullptr));
  for (int i = 0; i < 4; i++)
    RANK_CHECK(y[static_cast<size_t>(i)] == static_cast<float>(200 * k + 1 + 2 * i), "call %d: y[%d] = %g", k, i,
               y[static_cast<size_t>(i)]);
  return 0;
}

// The first call, broken on rank 1 by `bad` (returns its status); both ranks' statuses and messages are checked.
template <typename Bad>
int scenario(int rank, const tppp_unique_id& id, Bad bad, tppp_status want0, const char* needle0, tppp_status want1,
             const char* needle1) {
  tppp_group_params p = th::params(2, 1, 8000);
  tppp_group_t g = nullptr;
  RANK_OK(tppp_group_create(&id, 2, rank, &p, &g));
  std::vector<float> x(8, 1.0f), y(8);
  tppp_status s = rank == 0 ? tppp_all_reduce(g, TPPP_SCOPE_WORLD, x.data(), y.data(), 4, TPPP_DTYPE_F32,
                                              TPPP_OP_SUM, nullptr)
                            : bad(g, x.data(), y.data());
  const tppp_status want = rank == 0 ? want0 : want1;
  const char* needle = rank == 0 ? needle0 : needle1;
  RANK_CHECK(s == want, "first call: %s (want %s): %s", tppp_status_string(s), tppp_status_string(want),
             tppp_last_error());
  RANK_CHECK(has(tppp_last_error(), needle), "first call's message lacks '%s': %s", needle, tppp_last_error());
  for (int k = 1; k < 4; k++)
    if (good_call(g, rank, k)) return 1;
  tppp_group_destroy(g);
  return 0;
}

// A large all_reduce on 4 ranks, call k: rank r's element i is (7k + r + i) % 1000; the sum is checked.
int big_call(tppp_group_t g, int rank, int k, size_t n) {
  std::vector<float> x(n), y(n, -1.0f);
  for (size_t i = 0; i < n; i++) x[i] = static_cast<float>((7 * k + rank + static_cast<int>(i % 1000)) % 1000);
  RANK_OK(tppp_all_reduce(g, TPPP_SCOPE_WORLD, x.data(), y.data(), n, TPPP_DTYPE_F32, TPPP_OP_SUM, nullptr));
  for (size_t i = 0; i < n; i++) {
    float want = 0;
    for (int r = 0; r < 4; r++) want += static_cast<float>((7 * k + r + static_cast<int>(i % 1000)) % 1000);
    RANK_CHECK(y[i] == want, "large call %d: y[%zu] = %g, want %g", k, i, y[i], want);
  }
  return 0;
}

}  // namespace

TEST_SUITE("faults") {
  TEST_CASE("collective checks: the header is this call or a named failure") {
    tppp::CollCall a{tppp::CollKind::AllReduce, TPPP_DTYPE_F32, TPPP_OP_SUM, 0, 4};
    tppp::CollHeader mine = tppp::make_header(7, a), theirs = mine;
    CHECK_NOTHROW(tppp::check_header(mine, theirs, 0, 1, "world"));
    theirs.op = TPPP_OP_MAX;
    try {
      tppp::check_header(mine, theirs, 0, 1, "world");
      FAIL("a different op passed");
    } catch (const tppp::Error& e) {
      CHECK(e.status() == TPPP_ERR_INVALID_USAGE);
      CHECK(has(e.what(), "all_reduce of 4 F32 (sum)"));
      CHECK(has(e.what(), "rank 1 called all_reduce of 4 F32 (max)"));
    }
    theirs = mine;
    theirs.seq = 8;
    CHECK_THROWS_AS(tppp::check_header(mine, theirs, 0, 1, "world"), tppp::Error);
    theirs = mine;
    theirs.status = TPPP_ERR_INVALID_ARGUMENT;
    try {
      tppp::check_header(mine, theirs, 0, 1, "world");
      FAIL("a failed peer passed");
    } catch (const tppp::Error& e) {
      CHECK(e.status() == TPPP_ERR_REMOTE);
      CHECK(has(e.what(), "rank 1 failed this call with TPPP_ERR_INVALID_ARGUMENT"));
    }
  }

  // Rank 1's first call, broken three ways; rank 0 calls all_reduce of 4 F32 (sum).
  TEST_CASE("a bad dtype, count or op on one rank: both ranks fail that call, naming the other; later calls pair up") {
    struct Case {
      const char* what;
      tppp_status (*bad)(tppp_group_t, float*, float*);
      tppp_status want0, want1;
      const char *needle0, *needle1;
    } cases[] = {
        {"bad dtype",
         [](tppp_group_t g, float* x, float* y) {
           return tppp_all_reduce(g, TPPP_SCOPE_WORLD, x, y, 4, 99, TPPP_OP_SUM, nullptr);
         },
         TPPP_ERR_REMOTE, TPPP_ERR_INVALID_ARGUMENT, "rank 1 failed this call with TPPP_ERR_INVALID_ARGUMENT",
         "dtype 99"},
        {"different count",
         [](tppp_group_t g, float* x, float* y) {
           return tppp_all_reduce(g, TPPP_SCOPE_WORLD, x, y, 8, TPPP_DTYPE_F32, TPPP_OP_SUM, nullptr);
         },
         TPPP_ERR_INVALID_USAGE, TPPP_ERR_INVALID_USAGE, "this rank called all_reduce of 4 F32 (sum)",
         "rank 0 called all_reduce of 4 F32 (sum)"},
        {"all_gather against all_reduce (shared memory on one side, UCX messages on the other)",
         [](tppp_group_t g, float* x, float* y) {
           return tppp_all_gather(g, TPPP_SCOPE_WORLD, x, y, 4, TPPP_DTYPE_F32, nullptr);
         },
         TPPP_ERR_INVALID_USAGE, TPPP_ERR_INVALID_USAGE, "rank 1 called all_gather of 4 F32",
         "rank 0 called all_reduce of 4 F32 (sum)"},
        {"different op",
         [](tppp_group_t g, float* x, float* y) {
           return tppp_all_reduce(g, TPPP_SCOPE_WORLD, x, y, 4, TPPP_DTYPE_F32, TPPP_OP_MAX, nullptr);
         },
         TPPP_ERR_INVALID_USAGE, TPPP_ERR_INVALID_USAGE, "rank 1 called all_reduce of 4 F32 (max)",
         "rank 0 called all_reduce of 4 F32 (sum)"},
    };
    for (const Case& k : cases) {
      CAPTURE(k.what);
      auto codes = th::run_ranks(2, 60, [&k](int rank, const tppp_unique_id& id) {
        return scenario(rank, id, k.bad, k.want0, k.needle0, k.want1, k.needle1);
      });
      CHECK_MESSAGE(th::all_zero(codes), th::codes_str(codes));
    }
  }

  TEST_CASE("a broadcast with a different root on one rank: INVALID_USAGE naming both; later calls pair up") {
    auto codes = th::run_ranks(2, 60, [](int rank, const tppp_unique_id& id) {
      tppp_group_params p = th::params(2, 1, 8000);
      tppp_group_t g = nullptr;
      RANK_OK(tppp_group_create(&id, 2, rank, &p, &g));
      float b[4] = {1, 2, 3, 4};
      // Each rank believes it is the root: both only send.
      tppp_status s = tppp_broadcast(g, TPPP_SCOPE_WORLD, b, 4, TPPP_DTYPE_F32, rank, nullptr);
      RANK_CHECK(s == TPPP_ERR_INVALID_USAGE || s == TPPP_ERR_REMOTE, "different roots: %s: %s",
                 tppp_status_string(s), tppp_last_error());
      RANK_CHECK(has(tppp_last_error(), "from root"), "message: %s", tppp_last_error());
      for (int k = 1; k < 4; k++)
        if (good_call(g, rank, k)) return 1;
      tppp_group_destroy(g);
      return 0;
    });
    CHECK_MESSAGE(th::all_zero(codes), th::codes_str(codes));
  }

  TEST_CASE("a one-sided wrong shape in a layer forward: both ranks fail that forward; the next ones are right") {
    auto codes = th::run_ranks(2, 60, [](int rank, const tppp_unique_id& id) {
      tppp_group_params p = th::params(2, 1, 8000);
      tppp_group_t g = nullptr;
      RANK_OK(tppp_group_create(&id, 2, rank, &p, &g));
      tppp_layer_params lp;
      tppp_layer_params_init(&lp, sizeof lp);
      lp.kind = TPPP_LAYER_ROW;  // partial sums all-reduced over TP
      lp.in_features = 4;
      lp.out_features = 2;
      tppp_layer_t l = nullptr;
      RANK_OK(tppp_layer_create(g, &lp, &l));
      std::vector<float> w(2 * 2);  // this rank's [out, in/tp] = [2, 2]
      for (size_t i = 0; i < w.size(); i++) w[i] = static_cast<float>(i + 1 + 4 * rank);
      tppp_tensor wt = th::tensor(w.data(), TPPP_DTYPE_F32, 2, 2);
      RANK_OK(tppp_layer_bind(l, 0, &wt, nullptr));
      for (int k = 0; k < 4; k++) {
        std::vector<float> x(2, static_cast<float>(k + 1)), y(2, -1.0f);
        tppp_tensor xt = th::tensor(x.data(), TPPP_DTYPE_F32, 1, 2), yt = th::tensor(y.data(), TPPP_DTYPE_F32, 1, 2);
        if (k == 0 && rank == 1) yt.shape[1] = 3;  // one-sided wrong shape
        tppp_status s = tppp_layer_forward(l, &xt, &yt, nullptr);
        if (k == 0) {
          const tppp_status want = rank == 1 ? TPPP_ERR_INVALID_ARGUMENT : TPPP_ERR_REMOTE;
          RANK_CHECK(s == want, "forward 0: %s (want %s): %s", tppp_status_string(s), tppp_status_string(want),
                     tppp_last_error());
          continue;
        }
        RANK_CHECK(s == TPPP_OK, "forward %d: %s: %s", k, tppp_status_string(s), tppp_last_error());
        // y = sum over ranks of x_r W_r^T; x_r = (k+1) * [1, 1]; W_0 rows [1,2],[3,4]; W_1 rows [5,6],[7,8]
        const float want0 = (k + 1) * (1 + 2 + 5 + 6.0f), want1 = (k + 1) * (3 + 4 + 7 + 8.0f);
        RANK_CHECK(y[0] == want0 && y[1] == want1, "forward %d: y = [%g, %g], want [%g, %g]", k, y[0], y[1], want0,
                   want1);
      }
      tppp_layer_destroy(l);
      tppp_group_destroy(g);
      return 0;
    });
    CHECK_MESSAGE(th::all_zero(codes), th::codes_str(codes));
  }

  TEST_CASE("0 rows: on every rank it is fine (many times), on one rank only both fail; the next forward is right") {
    auto codes = th::run_ranks(2, 60, [](int rank, const tppp_unique_id& id) {
      tppp_group_params p = th::params(2, 1, 8000);
      tppp_group_t g = nullptr;
      RANK_OK(tppp_group_create(&id, 2, rank, &p, &g));
      tppp_layer_params lp;
      tppp_layer_params_init(&lp, sizeof lp);
      lp.kind = TPPP_LAYER_ROW;
      lp.in_features = 4;
      lp.out_features = 2;
      tppp_layer_t l = nullptr;
      RANK_OK(tppp_layer_create(g, &lp, &l));
      std::vector<float> w(4, 1.0f);
      tppp_tensor wt = th::tensor(w.data(), TPPP_DTYPE_F32, 2, 2);
      RANK_OK(tppp_layer_bind(l, 0, &wt, nullptr));
      std::vector<float> x(2, 1.0f), y(2, -1.0f);
      tppp_tensor x0 = th::tensor(x.data(), TPPP_DTYPE_F32, 0, 2), y0 = th::tensor(y.data(), TPPP_DTYPE_F32, 0, 2);
      tppp_tensor x1 = th::tensor(x.data(), TPPP_DTYPE_F32, 1, 2), y1 = th::tensor(y.data(), TPPP_DTYPE_F32, 1, 2);
      for (int k = 0; k < 300; k++) RANK_OK(tppp_layer_forward(l, &x0, &y0, nullptr));  // everyone skips
      RANK_OK(tppp_layer_forward(l, &x1, &y1, nullptr));
      RANK_CHECK(y[0] == 4.0f && y[1] == 4.0f, "after skips: y = [%g, %g]", y[0], y[1]);
      tppp_status s = tppp_layer_forward(l, rank == 0 ? &x0 : &x1, rank == 0 ? &y0 : &y1, nullptr);
      if (rank == 1)
        RANK_CHECK(s == TPPP_ERR_INVALID_USAGE && has(tppp_last_error(), "rank 0 made no such call"), "%s: %s",
                   tppp_status_string(s), tppp_last_error());
      else
        RANK_CHECK(s == TPPP_OK, "the rank with no rows: %s", tppp_status_string(s));
      y[0] = y[1] = -1.0f;
      RANK_OK(tppp_layer_forward(l, &x1, &y1, nullptr));
      RANK_CHECK(y[0] == 4.0f && y[1] == 4.0f, "after the one-sided skip: y = [%g, %g]", y[0], y[1]);
      tppp_layer_destroy(l);
      tppp_group_destroy(g);
      return 0;
    });
    CHECK_MESSAGE(th::all_zero(codes), th::codes_str(codes));
  }
}

// Four ranks. Across 2 hosts (test_multihost.sh, block placement: ranks 0, 1
// on one host) the all_reduce is hierarchical, its local phases in shared
// memory around the exchange across hosts; on one host it is the
// shared-memory all_reduce. Rank 3's first large call is made differently:
// every rank fails it (never TPPP_OK), and the large calls after it pair up.
TEST_SUITE("faults") {
  TEST_CASE("4 ranks: a large all_reduce made differently on one rank fails on every rank; later ones pair up") {
    constexpr size_t kN = 100003;  // 400 KB: past the small-message paths; blocks of unequal length
    struct Case {
      const char* what;
      tppp_status (*bad)(tppp_group_t, float*, float*);
    } cases[] = {
        {"different count",
         [](tppp_group_t g, float* x, float* y) {
           return tppp_all_reduce(g, TPPP_SCOPE_WORLD, x, y, kN + 64, TPPP_DTYPE_F32, TPPP_OP_SUM, nullptr);
         }},
        {"different op",
         [](tppp_group_t g, float* x, float* y) {
           return tppp_all_reduce(g, TPPP_SCOPE_WORLD, x, y, kN, TPPP_DTYPE_F32, TPPP_OP_MAX, nullptr);
         }},
        {"all_gather against all_reduce",
         [](tppp_group_t g, float* x, float* y) {
           return tppp_all_gather(g, TPPP_SCOPE_WORLD, x, y, kN / 4, TPPP_DTYPE_F32, nullptr);
         }},
    };
    for (const Case& k : cases) {
      CAPTURE(k.what);
      auto codes = th::run_ranks(4, 120, [&k](int rank, const tppp_unique_id& id) {
        tppp_group_params p = th::params(4, 1, 8000);
        tppp_group_t g = nullptr;
        RANK_OK(tppp_group_create(&id, 4, rank, &p, &g));
        std::vector<float> x(kN + 64, 1.0f), y(kN + 64);
        tppp_status s = rank == 3 ? k.bad(g, x.data(), y.data())
                                  : tppp_all_reduce(g, TPPP_SCOPE_WORLD, x.data(), y.data(), kN, TPPP_DTYPE_F32,
                                                    TPPP_OP_SUM, nullptr);
        RANK_CHECK(s == TPPP_ERR_INVALID_USAGE || s == TPPP_ERR_REMOTE, "first call: %s: %s", tppp_status_string(s),
                   tppp_last_error());
        RANK_CHECK(has(tppp_last_error(), "rank "), "first call's message names no rank: %s", tppp_last_error());
        for (int c = 1; c < 4; c++)
          if (big_call(g, rank, c, kN)) return 1;
        tppp_group_destroy(g);
        return 0;
      });
      CHECK_MESSAGE(th::all_zero(codes), th::codes_str(codes));
    }
  }
}
