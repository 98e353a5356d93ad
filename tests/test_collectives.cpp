// Every collective and p2p over UCX between real processes: 1-4 ranks, the
// TP/PP subgroups of a 2x2 grid, 1 element to 16 MiB, every dtype, against a
// float64 reference on random data, outputs poisoned before each call.
#include <doctest/doctest.h>

#include "harness.hpp"
#include "transport/host_collectives.hpp"

namespace {

const int32_t kAllDtypes[] = {TPPP_DTYPE_F32, TPPP_DTYPE_F16, TPPP_DTYPE_BF16, TPPP_DTYPE_F8E4M3, TPPP_DTYPE_F8E5M2,
                              TPPP_DTYPE_I8,  TPPP_DTYPE_U8,  TPPP_DTYPE_I32,  TPPP_DTYPE_I64};
const int32_t kReduceDtypes[] = {TPPP_DTYPE_F32, TPPP_DTYPE_F16, TPPP_DTYPE_BF16, TPPP_DTYPE_I32, TPPP_DTYPE_I64};

// Sizes in bytes, 1 element up to 16 MiB; the big ones for a few dtypes only
// to keep the suite quick on 2 cores.
std::vector<size_t> counts_for(int32_t dtype) {
  size_t es = tppp::dtype_size(dtype);
  std::vector<size_t> c = {1, 3, 1000, 16385};
  if (dtype == TPPP_DTYPE_F32 || dtype == TPPP_DTYPE_BF16 || dtype == TPPP_DTYPE_U8) {
    c.push_back((1u << 20) / es + 5);  // ~1 MiB, ring algorithm, uneven chunks
    c.push_back((16u << 20) / es);     // 16 MiB
  }
  return c;
}

int scope_size(tppp_group_t g, int32_t scope, int32_t* me) {
  int32_t r = 0, n = 0;
  tppp_group_scope(g, scope, &r, &n);
  *me = r;
  return n;
}

// Runs every collective on `scope` of an already formed group. Case ids are
// mixed with the scope's member list so data differs per rank and per case.
int check_collectives(tppp_group_t g, int32_t scope, uint64_t case_base) {
  int32_t me = 0;
  const int n = scope_size(g, scope, &me);
  std::vector<int> members(static_cast<size_t>(n));
  for (int i = 0; i < n; i++) tppp_group_global_rank(g, scope, i, &members[static_cast<size_t>(i)]);
  uint64_t k = case_base;

  for (int32_t dt : kReduceDtypes) {
    for (size_t count : counts_for(dt)) {
      for (int32_t op : {TPPP_OP_SUM, TPPP_OP_MAX, TPPP_OP_MIN}) {
        if (op != TPPP_OP_SUM && count > 20000) continue;
        k++;
        const size_t es = tppp::dtype_size(dt);
        std::vector<char> in(count * es), out(count * es);
        for (size_t i = 0; i < count; i++) th::store(dt, in.data(), i, th::value(dt, k, members[me], i));
        std::vector<double> ref(count);
        for (size_t i = 0; i < count; i++) {
          double acc = th::value(dt, k, members[0], i);
          for (int r = 1; r < n; r++) {
            double v = th::value(dt, k, members[static_cast<size_t>(r)], i);
            acc = op == TPPP_OP_SUM ? acc + v : (op == TPPP_OP_MAX ? std::max(acc, v) : std::min(acc, v));
          }
          ref[i] = acc;
        }
        const bool in_place = (k % 2) == 0;
        th::poison(out.data(), out.size());
        if (in_place) out = in;
        RANK_OK(tppp_all_reduce(g, scope, in_place ? out.data() : in.data(), out.data(), count, dt, op, nullptr));
        double err = th::rel_err(dt, out.data(), ref);
        double tol = op == TPPP_OP_SUM ? th::tolerance(dt, n) : 0;
        RANK_CHECK(err <= tol, "all_reduce dtype %s op %d count %zu n %d: rel err %g > %g", tppp::dtype_name(dt), op,
                   count, n, err, tol);
        // Every rank must hold the same bits: gather a checksum.
        uint64_t h = tppp::fnv1a64(out.data(), out.size());
        std::vector<uint64_t> hs(static_cast<size_t>(n));
        RANK_OK(tppp_all_gather(g, scope, &h, hs.data(), 1, TPPP_DTYPE_I64, nullptr));
        for (int r = 0; r < n; r++)
          RANK_CHECK(hs[static_cast<size_t>(r)] == h, "all_reduce %s count %zu: rank %d holds other bits",
                     tppp::dtype_name(dt), count, r);
      }
    }
  }

  for (int32_t dt : kAllDtypes) {
    for (size_t count : counts_for(dt)) {
      k++;
      const size_t es = tppp::dtype_size(dt);
      // all_gather
      std::vector<char> in(count * es), out(count * es * static_cast<size_t>(n));
      for (size_t i = 0; i < count; i++) th::store(dt, in.data(), i, th::value(dt, k, members[me], i));
      th::poison(out.data(), out.size());
      RANK_OK(tppp_all_gather(g, scope, in.data(), out.data(), count, dt, nullptr));
      for (int r = 0; r < n; r++) {
        std::vector<double> ref(count);
        for (size_t i = 0; i < count; i++) ref[i] = th::value(dt, k, members[static_cast<size_t>(r)], i);
        double err = th::rel_err(dt, out.data() + static_cast<size_t>(r) * count * es, ref);
        RANK_CHECK(err == 0, "all_gather %s count %zu n %d: block %d differs (err %g)", tppp::dtype_name(dt), count,
                   n, r, err);
      }
      // broadcast from a root that moves with the case
      const int root = static_cast<int>(k % static_cast<uint64_t>(n));
      std::vector<char> b(count * es);
      if (me == root)
        for (size_t i = 0; i < count; i++) th::store(dt, b.data(), i, th::value(dt, k + 7, members[root], i));
      else
        th::poison(b.data(), b.size());
      RANK_OK(tppp_broadcast(g, scope, b.data(), count, dt, root, nullptr));
      std::vector<double> ref(count);
      for (size_t i = 0; i < count; i++) ref[i] = th::value(dt, k + 7, members[root], i);
      RANK_CHECK(th::rel_err(dt, b.data(), ref) == 0, "broadcast %s count %zu root %d differs", tppp::dtype_name(dt),
                 count, root);
      // p2p ring: send to the next member, receive from the previous one
      if (n > 1) {
        const int next = (me + 1) % n, prev = (me + n - 1) % n;
        std::vector<char> rb(count * es);
        th::poison(rb.data(), rb.size());
        tppp_request_t rr = nullptr, sr = nullptr;
        RANK_OK(tppp_irecv(g, scope, prev, static_cast<int32_t>(k & 0x7fffffff), rb.data(), rb.size(), nullptr, &rr));
        RANK_OK(tppp_isend(g, scope, next, static_cast<int32_t>(k & 0x7fffffff), in.data(), in.size(), nullptr, &sr));
        int32_t done = 0;
        RANK_OK(tppp_request_test(rr, &done));
        RANK_OK(tppp_request_wait(rr));
        RANK_OK(tppp_request_wait(sr));
        RANK_OK(tppp_request_test(rr, &done));
        RANK_CHECK(done == 1, "a finished request tests done");
        tppp_request_free(rr);
        tppp_request_free(sr);
        for (size_t i = 0; i < count; i++) ref[i] = th::value(dt, k, members[static_cast<size_t>(prev)], i);
        RANK_CHECK(th::rel_err(dt, rb.data(), ref) == 0, "p2p %s count %zu from %d differs", tppp::dtype_name(dt),
                   count, prev);
      }
    }
  }
  RANK_OK(tppp_barrier(g, scope));
  return 0;
}

int world_rank(int rank, const tppp_unique_id& id, int n, int tp, int pp, int32_t scope_mask) {
  tppp_group_t g = nullptr;
  tppp_group_params p = th::params(tp, pp, 60000);
  RANK_OK(tppp_group_create(&id, n, rank, &p, &g));
  for (int32_t scope : {TPPP_SCOPE_WORLD, TPPP_SCOPE_TP, TPPP_SCOPE_PP})
    if (scope_mask & (1 << scope))
      if (check_collectives(g, scope, 1000000ull * static_cast<uint64_t>(scope + 1)) != 0) {
        tppp_group_destroy(g);
        return 1;
      }
  tppp_group_destroy(g);
  return 0;
}

}  // namespace

TEST_SUITE("collectives") {
  TEST_CASE("host reduction kernels match float64 for every reducible dtype") {
    for (int32_t dt : kReduceDtypes) {
      const size_t n = 1000, es = tppp::dtype_size(dt);
      std::vector<char> a(n * es), b(n * es);
      std::vector<double> ref(n);
      for (size_t i = 0; i < n; i++) {
        th::store(dt, a.data(), i, th::value(dt, 1, 0, i));
        th::store(dt, b.data(), i, th::value(dt, 1, 1, i));
        ref[i] = th::value(dt, 1, 0, i) + th::value(dt, 1, 1, i);
      }
      tppp::reduce_into(a.data(), b.data(), n, dt, TPPP_OP_SUM);
      CAPTURE(tppp::dtype_name(dt));
      CHECK(th::rel_err(dt, a.data(), ref) <= th::tolerance(dt, 1));
    }
  }

  TEST_CASE("f16 and bf16 conversions round to nearest even") {
    CHECK(tppp::f32_to_bf16(1.0f) == 0x3f80);
    CHECK(tppp::f32_to_bf16(1.00390625f) == 0x3f80);  // tie -> even
    CHECK(tppp::f32_to_bf16(1.01171875f) == 0x3f82);  // tie -> even (up)
    CHECK(tppp::f32_to_f16(1.0f) == 0x3c00);
    CHECK(tppp::f32_to_f16(65504.f) == 0x7bff);
    CHECK(tppp::f32_to_f16(1e6f) == 0x7c00);
    CHECK(tppp::f16_to_f32(0x0001) == doctest::Approx(5.9604645e-8));
    for (uint32_t h = 0; h < 0x7c00; h++) CHECK_EQ(tppp::f32_to_f16(tppp::f16_to_f32(static_cast<uint16_t>(h))), h);
  }

  TEST_CASE("1 rank: every collective is a local copy") {
    auto codes = th::run_ranks(1, 120, [](int r, const tppp_unique_id& id) {
      return world_rank(r, id, 1, 1, 1, 1 << TPPP_SCOPE_WORLD);
    });
    CHECK_MESSAGE(th::all_zero(codes), th::codes_str(codes));
  }

  TEST_CASE("2 ranks over UCX") {
    auto codes = th::run_ranks(2, 300, [](int r, const tppp_unique_id& id) {
      return world_rank(r, id, 2, 2, 1, 1 << TPPP_SCOPE_WORLD);
    });
    CHECK_MESSAGE(th::all_zero(codes), th::codes_str(codes));
  }

  TEST_CASE("3 ranks over UCX (non-power-of-two)") {
    auto codes = th::run_ranks(3, 400, [](int r, const tppp_unique_id& id) {
      return world_rank(r, id, 3, 1, 3, 1 << TPPP_SCOPE_WORLD);
    });
    CHECK_MESSAGE(th::all_zero(codes), th::codes_str(codes));
  }

  TEST_CASE("4 ranks over UCX, world and the TP/PP subgroups of a 2x2 grid") {
    auto codes = th::run_ranks(4, 600, [](int r, const tppp_unique_id& id) {
      return world_rank(r, id, 4, 2, 2, (1 << TPPP_SCOPE_WORLD) | (1 << TPPP_SCOPE_TP) | (1 << TPPP_SCOPE_PP));
    });
    CHECK_MESSAGE(th::all_zero(codes), th::codes_str(codes));
  }
}
