// The scheduler between real processes: P in {2, 3, 4} stages and tp in
// {1, 2} (up to 4 processes). A stack of TP MLP blocks split across stages
// gives what one process computes for the whole stack (float64 reference);
// the decode ring hands micro-batches back; failures anywhere make every
// stage fail within the timeout; stats and the Chrome trace.
#include <doctest/doctest.h>

#include <signal.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "harness.hpp"

namespace {

constexpr int64_t H = 32, I = 48;

using th::tensor;

double w_gate(int l, int64_t i, int64_t j) { return th::value(TPPP_DTYPE_F32, 100 + static_cast<uint64_t>(l), 0, static_cast<size_t>(i * H + j)) * 0.3; }
double w_up(int l, int64_t i, int64_t j) { return th::value(TPPP_DTYPE_F32, 200 + static_cast<uint64_t>(l), 0, static_cast<size_t>(i * H + j)) * 0.3; }
double w_down(int l, int64_t i, int64_t j) { return th::value(TPPP_DTYPE_F32, 300 + static_cast<uint64_t>(l), 0, static_cast<size_t>(i * I + j)) * 0.3; }
double x_in(int64_t r, int64_t c) { return th::value(TPPP_DTYPE_F32, 7, 0, static_cast<size_t>(r * H + c)); }

// The whole stack in one process, float64.
std::vector<double> reference(int layers, int64_t rows) {
  std::vector<double> x(static_cast<size_t>(rows * H));
  for (int64_t r = 0; r < rows; r++)
    for (int64_t c = 0; c < H; c++) x[static_cast<size_t>(r * H + c)] = static_cast<float>(x_in(r, c));
  for (int l = 0; l < layers; l++) {
    std::vector<double> y(x.size(), 0.0), act(static_cast<size_t>(I));
    for (int64_t r = 0; r < rows; r++) {
      for (int64_t i = 0; i < I; i++) {
        double g = 0, u = 0;
        for (int64_t j = 0; j < H; j++) {
          g += x[static_cast<size_t>(r * H + j)] * static_cast<float>(w_gate(l, i, j));
          u += x[static_cast<size_t>(r * H + j)] * static_cast<float>(w_up(l, i, j));
        }
        act[static_cast<size_t>(i)] = g / (1 + std::exp(-g)) * u;
      }
      for (int64_t c = 0; c < H; c++) {
        double s = 0;
        for (int64_t i = 0; i < I; i++) s += act[static_cast<size_t>(i)] * static_cast<float>(w_down(l, c, i));
        y[static_cast<size_t>(r * H + c)] = s;
      }
    }
    x = y;
  }
  return x;
}

// Binds this rank's shard of MLP block l.
int bind_mlp(tppp_layer_t m, int l, int tp, int tr) {
  const int64_t ir = I / tp;
  std::vector<float> gu(static_cast<size_t>(2 * ir * H)), d(static_cast<size_t>(H * ir));
  for (int64_t i = 0; i < ir; i++)
    for (int64_t j = 0; j < H; j++) {
      gu[static_cast<size_t>(i * H + j)] = static_cast<float>(w_gate(l, tr * ir + i, j));
      gu[static_cast<size_t>((ir + i) * H + j)] = static_cast<float>(w_up(l, tr * ir + i, j));
    }
  for (int64_t c = 0; c < H; c++)
    for (int64_t i = 0; i < ir; i++) d[static_cast<size_t>(c * ir + i)] = static_cast<float>(w_down(l, c, tr * ir + i));
  tppp_tensor gt = tensor(gu.data(), TPPP_DTYPE_F32, 2 * ir, H), dt = tensor(d.data(), TPPP_DTYPE_F32, H, ir);
  RANK_OK(tppp_layer_bind(m, 0, &gt, nullptr));
  RANK_OK(tppp_layer_bind(m, 1, &dt, nullptr));
  return 0;
}

int mlp_stack_rank(int rank, const tppp_unique_id& id, int tp, int P, int M, int layers) {
  tppp_group_params gp = th::params(tp, P, 30000);
  tppp_group_t g = nullptr;
  RANK_OK(tppp_group_create(&id, tp * P, rank, &gp, &g));
  const int tr = rank % tp, s = rank / tp;
  int first = 0;  // layers split like the loader's: remainder to earlier stages
  for (int k = 0; k < s; k++) first += layers / P + (k < layers % P ? 1 : 0);
  const int mine = layers / P + (s < layers % P ? 1 : 0);
  std::vector<tppp_layer_t> ls;
  tppp_layer_params lp;
  tppp_layer_params_init(&lp, sizeof lp);
  lp.kind = TPPP_LAYER_MLP;
  lp.in_features = H;
  lp.out_features = I;
  tppp_scheduler_params sp;
  tppp_scheduler_params_init(&sp, sizeof sp);
  sp.num_microbatches = M;
  sp.hidden = H;
  tppp_scheduler_t sch = nullptr;
  RANK_OK(tppp_scheduler_create(g, &sp, &sch));
  for (int l = first; l < first + mine; l++) {
    tppp_layer_t m = nullptr;
    RANK_OK(tppp_layer_create(g, &lp, &m));
    if (bind_mlp(m, l, tp, tr)) return 1;
    RANK_OK(tppp_scheduler_add_layer(sch, m));
    ls.push_back(m);
  }
  const int64_t rows = 13;
  std::vector<float> x(static_cast<size_t>(rows * H)), y(static_cast<size_t>(rows * H));
  for (int64_t r = 0; r < rows; r++)
    for (int64_t c = 0; c < H; c++) x[static_cast<size_t>(r * H + c)] = static_cast<float>(x_in(r, c));
  th::poison(y.data(), y.size() * 4);
  tppp_tensor xt = tensor(x.data(), TPPP_DTYPE_F32, rows, H), yt = tensor(y.data(), TPPP_DTYPE_F32, rows, H);
  for (int rep = 0; rep < 2; rep++) {  // runs repeat on one scheduler
    RANK_OK(tppp_scheduler_run(sch, s == 0 ? &xt : nullptr, s == P - 1 ? &yt : nullptr));
    if (s == P - 1) {
      double e = th::rel_err(TPPP_DTYPE_F32, y.data(), reference(layers, rows));
      RANK_CHECK(e < 1e-5, "P %d tp %d M %d: rel err %g", P, tp, M, e);
    }
  }
  tppp_scheduler_stats st;
  st.struct_size = sizeof st;
  RANK_OK(tppp_scheduler_get_stats(sch, &st));
  RANK_CHECK(st.stage == s && st.num_microbatches == M, "stats");
  RANK_CHECK(std::fabs(st.theory_bubble - double(P - 1) / (M + P - 1)) < 1e-12, "theory bubble");
  RANK_CHECK(st.busy_ms > 0 && st.busy_ms <= st.wall_ms && st.bubble >= 0 && st.bubble < 1, "busy/idle");
  std::string trace = "/tmp/tppp_trace_" + std::to_string(getppid()) + "_" + std::to_string(P) + ".json";
  RANK_OK(tppp_scheduler_write_trace(sch, trace.c_str()));
  if (rank == 0) {
    std::ifstream f(trace);
    std::stringstream ss;
    ss << f.rdbuf();
    auto j = nlohmann::json::parse(ss.str());
    int forwards = 0;
    for (auto& e : j["traceEvents"])
      if (e["ph"] == "X") forwards++;
    RANK_CHECK(forwards == tp * P * M, "trace has %d forward events, want %d", forwards, tp * P * M);
    std::remove(trace.c_str());
  }
  tppp_scheduler_destroy(sch);
  for (auto m : ls) tppp_layer_destroy(m);
  tppp_group_destroy(g);
  return 0;
}

// Host stage function: out = in + (stage + 1).
int32_t add_stage(void* user, int32_t, int32_t, const tppp_tensor* in, const tppp_tensor* out) {
  const int stage = *static_cast<int*>(user);
  const float* a = static_cast<const float*>(in->data);
  float* b = static_cast<float*>(out->data);
  for (int64_t i = 0; i < in->shape[0] * in->shape[1]; i++) b[i] = a[i] + static_cast<float>(stage + 1);
  return 0;
}

struct FailAt {
  int stage, mb;
  bool kill;
};
FailAt g_fail;

int32_t failing_stage(void* user, int32_t mb, int32_t step, const tppp_tensor* in, const tppp_tensor* out) {
  const int stage = *static_cast<int*>(user);
  if (stage == g_fail.stage && mb == g_fail.mb) {
    if (g_fail.kill) raise(SIGKILL);
    return 42;
  }
  return add_stage(user, mb, step, in, out);
}

}  // namespace

TEST_SUITE("pipeline") {
  TEST_CASE("a stack of TP MLP blocks across stages equals one process (P 2..4, tp 1..2, M < P too)") {
    struct C {
      int tp, P, M, layers;
    } cases[] = {{1, 2, 4, 3}, {2, 2, 3, 4}, {1, 3, 5, 5}, {1, 4, 8, 4}, {1, 4, 2, 6}, {2, 2, 1, 2}};
    for (const C& c : cases) {
      CAPTURE(c.tp);
      CAPTURE(c.P);
      CAPTURE(c.M);
      auto codes = th::run_ranks(c.tp * c.P, 120, [&](int r, const tppp_unique_id& id) {
        return mlp_stack_rank(r, id, c.tp, c.P, c.M, c.layers);
      });
      CHECK_MESSAGE(th::all_zero(codes), th::codes_str(codes));
    }
  }

  TEST_CASE("decode ring: the last stage hands micro-batches back for the next step") {
    for (int P : {1, 2, 3}) {
      CAPTURE(P);
      auto codes = th::run_ranks(P, 60, [P](int rank, const tppp_unique_id& id) {
        tppp_group_params gp = th::params(1, P, 20000);
        tppp_group_t g = nullptr;
        RANK_OK(tppp_group_create(&id, P, rank, &gp, &g));
        tppp_scheduler_params sp;
        tppp_scheduler_params_init(&sp, sizeof sp);
        sp.policy = TPPP_POLICY_DECODE_RING;
        sp.num_microbatches = P + 1;
        sp.steps = 3;
        sp.hidden = 4;
        tppp_scheduler_t s = nullptr;
        RANK_OK(tppp_scheduler_create(g, &sp, &s));
        int stage = rank;
        RANK_OK(tppp_scheduler_set_stage_fn(s, add_stage, &stage));
        std::vector<float> x(6 * 4), y(6 * 4, -1.0f);
        for (size_t i = 0; i < x.size(); i++) x[i] = static_cast<float>(i);
        tppp_tensor xt = tensor(x.data(), TPPP_DTYPE_F32, 6, 4), yt = tensor(y.data(), TPPP_DTYPE_F32, 6, 4);
        RANK_OK(tppp_scheduler_submit(s, rank == 0 ? &xt : nullptr, rank == P - 1 ? &yt : nullptr));
        int32_t done = 0;
        for (int k = 0; k < 20000 && !done; k++) {
          RANK_OK(tppp_scheduler_poll(s, &done));
          if (!done) std::this_thread::sleep_for(std::chrono::microseconds(200));
        }
        RANK_OK(tppp_scheduler_wait(s));
        if (rank == P - 1) {  // each step adds 1 + 2 + ... + P
          const float add = 3.0f * P * (P + 1) / 2;
          for (size_t i = 0; i < y.size(); i++) RANK_CHECK(y[i] == x[i] + add, "y[%zu] = %g, want %g", i, y[i], x[i] + add);
        }
        tppp_scheduler_stats st;
        st.struct_size = sizeof st;
        RANK_OK(tppp_scheduler_get_stats(s, &st));
        RANK_CHECK(st.steps == 3, "steps");
        tppp_scheduler_destroy(s);
        tppp_group_destroy(g);
        return 0;
      });
      CHECK_MESSAGE(th::all_zero(codes), th::codes_str(codes));
    }
  }

  // The contract c_api.h states for DECODE_RING: M < P runs; micro-batch m
  // holds rows/M (+1 when m < rows % M) rows; stage 0 reads `in` at step 0
  // only and the last stage's output after that; `out` holds the last step.
  TEST_CASE("decode ring contract: M < P, uneven micro-batches, out from the last step only") {
    for (int P : {1, 2, 3})
      for (int M : {1, 2}) {
        CAPTURE(P);
        CAPTURE(M);
        auto codes = th::run_ranks(P, 60, [P, M](int rank, const tppp_unique_id& id) {
          tppp_group_params gp = th::params(1, P, 20000);
          tppp_group_t g = nullptr;
          RANK_OK(tppp_group_create(&id, P, rank, &gp, &g));
          tppp_scheduler_params sp;
          tppp_scheduler_params_init(&sp, sizeof sp);
          sp.policy = TPPP_POLICY_DECODE_RING;
          sp.num_microbatches = M;
          sp.steps = 4;
          sp.hidden = 3;
          tppp_scheduler_t s = nullptr;
          RANK_OK(tppp_scheduler_create(g, &sp, &s));
          struct Ctx {
            int stage, M, rows, bad = 0;
          } ctx{rank, M, 7};
          // out = in * 2 + (step + 1) * 100 + stage: a step's input shows which output it was.
          auto fn = [](void* user, int32_t mb, int32_t step, const tppp_tensor* in, const tppp_tensor* out) -> int32_t {
            Ctx& c = *static_cast<Ctx*>(user);
            const int64_t want = c.rows / c.M + (mb < c.rows % c.M ? 1 : 0);
            if (in->shape[0] != want || out->shape[0] != want) c.bad++;
            const float* a = static_cast<const float*>(in->data);
            float* b = static_cast<float*>(out->data);
            for (int64_t i = 0; i < in->shape[0] * in->shape[1]; i++) b[i] = a[i] * 2 + (step + 1) * 100.0f + c.stage;
            return 0;
          };
          RANK_OK(tppp_scheduler_set_stage_fn(s, fn, &ctx));
          std::vector<float> x(7 * 3), y(7 * 3, -1.0f);
          for (size_t i = 0; i < x.size(); i++) x[i] = static_cast<float>(i % 5);
          tppp_tensor xt = tensor(x.data(), TPPP_DTYPE_F32, 7, 3), yt = tensor(y.data(), TPPP_DTYPE_F32, 7, 3);
          RANK_OK(tppp_scheduler_run(s, rank == 0 ? &xt : nullptr, rank == P - 1 ? &yt : nullptr));
          RANK_CHECK(ctx.bad == 0, "%d stage calls saw the wrong micro-batch rows", ctx.bad);
          if (rank == P - 1)
            for (size_t i = 0; i < y.size(); i++) {
              double v = x[i];  // every step passes every stage in order, the hand-back feeds the next step
              for (int step = 0; step < 4; step++)
                for (int st = 0; st < P; st++) v = v * 2 + (step + 1) * 100.0 + st;
              RANK_CHECK(y[i] == static_cast<float>(v), "y[%zu] = %g, want %g", i, y[i], v);
            }
          tppp_scheduler_destroy(s);
          tppp_group_destroy(g);
          return 0;
        });
        CHECK_MESSAGE(th::all_zero(codes), th::codes_str(codes));
      }
  }

  TEST_CASE("a failing stage function or a killed stage: every stage fails within the timeout") {
    for (FailAt f : {FailAt{0, 1, false}, FailAt{1, 2, false}, FailAt{2, 0, false}, FailAt{1, 1, true}}) {
      CAPTURE(f.stage);
      CAPTURE(f.kill);
      g_fail = f;
      const int P = 3, timeout = 2000;
      auto codes = th::run_ranks(P, 60, [&](int rank, const tppp_unique_id& id) {
        tppp_group_params gp = th::params(1, P, timeout);
        tppp_group_t g = nullptr;
        RANK_OK(tppp_group_create(&id, P, rank, &gp, &g));
        tppp_scheduler_params sp;
        tppp_scheduler_params_init(&sp, sizeof sp);
        sp.num_microbatches = 4;
        sp.hidden = 4;
        tppp_scheduler_t s = nullptr;
        RANK_OK(tppp_scheduler_create(g, &sp, &s));
        int stage = rank;
        RANK_OK(tppp_scheduler_set_stage_fn(s, failing_stage, &stage));
        std::vector<float> x(8 * 4, 1.0f), y(8 * 4);
        tppp_tensor xt = tensor(x.data(), TPPP_DTYPE_F32, 8, 4), yt = tensor(y.data(), TPPP_DTYPE_F32, 8, 4);
        auto t0 = std::chrono::steady_clock::now();
        tppp_status st = tppp_scheduler_run(s, rank == 0 ? &xt : nullptr, rank == P - 1 ? &yt : nullptr);
        double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
        RANK_CHECK(st != TPPP_OK, "rank %d finished a failed run", rank);
        RANK_CHECK(ms < timeout + 1500, "rank %d took %.0f ms", rank, ms);
        if (rank > g_fail.stage && !g_fail.kill)
          RANK_CHECK(st == TPPP_ERR_REMOTE && std::string(tppp_last_error()).find("failed") != std::string::npos,
                     "downstream: %s %s", tppp_status_string(st), tppp_last_error());
        tppp_scheduler_destroy(s);
        tppp_group_destroy(g);
        return 0;
      });
      for (int r = 0; r < P; r++) {
        CAPTURE(r);
        CHECK(codes[static_cast<size_t>(r)] == ((f.kill && r == f.stage) ? 128 + SIGKILL : 0));
      }
    }
  }

  TEST_CASE("bad scheduler arguments") {
    auto codes = th::run_ranks(1, 30, [](int rank, const tppp_unique_id& id) {
      tppp_group_params gp = th::params(1, 1, 5000);
      tppp_group_t g = nullptr;
      RANK_OK(tppp_group_create(&id, 1, rank, &gp, &g));
      tppp_scheduler_params sp;
      tppp_scheduler_params_init(&sp, sizeof sp);
      tppp_scheduler_t s = nullptr;
      RANK_CHECK(tppp_scheduler_create(g, &sp, &s) == TPPP_ERR_INVALID_ARGUMENT, "hidden 0");
      sp.hidden = 4;
      sp.num_microbatches = 0;
      RANK_CHECK(tppp_scheduler_create(g, &sp, &s) == TPPP_ERR_INVALID_ARGUMENT, "M 0");
      sp.num_microbatches = 3;
      sp.policy = 9;
      RANK_CHECK(tppp_scheduler_create(g, &sp, &s) == TPPP_ERR_INVALID_ARGUMENT, "policy 9");
      sp.policy = TPPP_POLICY_FILL_DRAIN;
      RANK_OK(tppp_scheduler_create(g, &sp, &s));
      std::vector<float> x(2 * 4);
      tppp_tensor xt = tensor(x.data(), TPPP_DTYPE_F32, 2, 4);
      RANK_CHECK(tppp_scheduler_run(s, &xt, &xt) == TPPP_ERR_INVALID_USAGE, "no stage fn: %s", tppp_last_error());
      int stage = 0;
      RANK_OK(tppp_scheduler_set_stage_fn(s, add_stage, &stage));
      RANK_CHECK(tppp_scheduler_run(s, &xt, &xt) == TPPP_ERR_INVALID_ARGUMENT, "2 rows, 3 micro-batches");
      tppp_tensor bad = tensor(x.data(), TPPP_DTYPE_F32, 2, 5);
      RANK_CHECK(tppp_scheduler_run(s, &bad, &bad) == TPPP_ERR_INVALID_ARGUMENT, "hidden mismatch");
      RANK_CHECK(tppp_scheduler_run(s, nullptr, nullptr) == TPPP_ERR_INVALID_ARGUMENT, "no input");
      RANK_CHECK(tppp_scheduler_run(nullptr, nullptr, nullptr) == TPPP_ERR_INVALID_ARGUMENT, "null");
      tppp_scheduler_destroy(s);
      tppp_scheduler_destroy(nullptr);
      tppp_group_destroy(g);
      return 0;
    });
    CHECK_MESSAGE(th::all_zero(codes), th::codes_str(codes));
  }
}
