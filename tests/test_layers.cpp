// TP layers on the CPU backend between real processes (TP = 1, 2, 4): every
// kind, every float dtype, M in {1, 7, 64, 257}, against a float64 reference
// computed from the full (unsharded) weights; each rank slices its own shard
// here, independently of the library's rules; outputs poisoned before each
// run. Plus bad input, and checkpoint binding equal to caller buffers.
// With TPPP_TEST_DEVICE=<ordinal> (CUDA builds, scripts/gpu-check.sh) the
// same checks run on the CUDA backend: every rank on that GPU (ranks share it
// over UCX), x/y/ids in device memory, y poisoned on the device.
#include <doctest/doctest.h>
#ifdef TPPP_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif
#include <cstdlib>

#include <cmath>
#include <string>
#include <vector>

#include "harness.hpp"

namespace {

using Mat = std::vector<double>;  // row-major

// Deterministic values in the dtype's precision, never zero-filled.
Mat make(int32_t dt, uint64_t seed, size_t n, double scale = 1.0) {
  Mat m(n);
  for (size_t i = 0; i < n; i++) m[i] = th::value(dt == TPPP_DTYPE_F32 ? TPPP_DTYPE_F32 : dt, seed, 0, i) * scale;
  return m;
}

std::vector<char> pack(int32_t dt, const Mat& m) {
  std::vector<char> b(m.size() * tppp::dtype_size(dt));
  for (size_t i = 0; i < m.size(); i++) th::store(dt, b.data(), i, m[i]);
  return b;
}

using th::tensor;

using th::test_device;

// Tensors handed to forward/argmax: the host buffer itself on the CPU, a
// device copy (freed at scope exit) on CUDA.
struct Io {
  std::vector<void*> dev;
  ~Io() {
#ifdef TPPP_HAVE_CUDA
    for (void* p : dev) cudaFree(p);
#endif
  }
  tppp_tensor in(void* host, size_t bytes, int32_t dt, std::initializer_list<int64_t> shape) {
    tppp_tensor t = tensor(host, dt, shape);
    if (test_device() < 0) return t;
#ifdef TPPP_HAVE_CUDA
    void* d = nullptr;
    if (cudaMalloc(&d, bytes ? bytes : 1) != cudaSuccess || cudaMemcpy(d, host, bytes, cudaMemcpyHostToDevice) != cudaSuccess)
      return tppp_tensor{};
    dev.push_back(d);
    t.data = d;
    t.mem_kind = TPPP_MEM_CUDA;
    t.device = test_device();
#endif
    return t;
  }
  tppp_tensor in(std::vector<char>& b, int32_t dt, std::initializer_list<int64_t> shape) {
    return in(b.data(), b.size(), dt, shape);
  }
  // Copies a tensor made by in() back into its host buffer.
  bool out(const tppp_tensor& t, void* host, size_t bytes) {
    if (test_device() < 0) return true;
#ifdef TPPP_HAVE_CUDA
    return cudaDeviceSynchronize() == cudaSuccess && cudaMemcpy(host, t.data, bytes, cudaMemcpyDeviceToHost) == cudaSuccess;
#else
    return false;
#endif
  }
};

// y[M,N] = x[M,K] W[N,K]^T + b
Mat ref_linear(const Mat& x, const Mat& w, const Mat* b, int64_t m, int64_t n, int64_t k) {
  Mat y(static_cast<size_t>(m * n));
  for (int64_t r = 0; r < m; r++)
    for (int64_t c = 0; c < n; c++) {
      double s = b ? (*b)[static_cast<size_t>(c)] : 0.0;
      for (int64_t j = 0; j < k; j++) s += x[static_cast<size_t>(r * k + j)] * w[static_cast<size_t>(c * k + j)];
      y[static_cast<size_t>(r * n + c)] = s;
    }
  return y;
}

Mat rows(const Mat& w, int64_t k, int64_t r0, int64_t nrows, int64_t total_rows) {  // zero rows past total
  Mat o(static_cast<size_t>(nrows * k), 0.0);
  for (int64_t r = 0; r < nrows; r++)
    if (r0 + r < total_rows)
      for (int64_t j = 0; j < k; j++) o[static_cast<size_t>(r * k + j)] = w[static_cast<size_t>((r0 + r) * k + j)];
  return o;
}

Mat cols(const Mat& w, int64_t n, int64_t k, int64_t c0, int64_t nc) {
  Mat o(static_cast<size_t>(n * nc));
  for (int64_t r = 0; r < n; r++)
    for (int64_t j = 0; j < nc; j++) o[static_cast<size_t>(r * nc + j)] = w[static_cast<size_t>(r * k + c0 + j)];
  return o;
}

double silu(double g) { return g / (1.0 + std::exp(-g)); }

double tol(int32_t dt) { return dt == TPPP_DTYPE_F32 ? 1e-5 : (dt == TPPP_DTYPE_F16 ? 2e-3 : 1e-2); }

struct Ctx {
  tppp_group_t g;
  int tp, r;
};

tppp_layer_t make_layer(const Ctx& c, tppp_layer_params p) {
  tppp_layer_t l = nullptr;
  if (tppp_layer_create(c.g, &p, &l) != TPPP_OK) {
    std::fprintf(stderr, "layer_create: %s\n", tppp_last_error());
    return nullptr;
  }
  return l;
}

// Runs forward and compares y (shape [m, n]) with ref.
int check_forward(tppp_layer_t l, int32_t dt, const tppp_tensor& x, int64_t m, int64_t n, const Mat& ref,
                  const char* what) {
  std::vector<char> y(static_cast<size_t>(m * n) * tppp::dtype_size(dt));
  th::poison(y.data(), y.size());
  Io io;
  tppp_tensor yt = io.in(y, dt, {m, n});  // poisoned on the device too
  RANK_OK(tppp_layer_forward(l, &x, &yt, nullptr));
  RANK_CHECK(io.out(yt, y.data(), y.size()), "%s: copy back from the device", what);
  double e = th::rel_err(dt, y.data(), ref);
  RANK_CHECK(e <= tol(dt), "%s dtype %s M %lld: rel err %g", what, tppp::dtype_name(dt), static_cast<long long>(m), e);
  return 0;
}

int run_layers(const Ctx& c, int32_t dt, int64_t m) {
  const int tp = c.tp, r = c.r;
  const int64_t H = 64, I = 96, OUT = 80;
  uint64_t seed = 1000 * static_cast<uint64_t>(dt + 1) + static_cast<uint64_t>(m);
  Mat x = make(dt, seed, static_cast<size_t>(m * H));
  std::vector<char> xb = pack(dt, x);
  Io io;
  tppp_tensor xt = io.in(xb, dt, {m, H});
  tppp_layer_params p;
  // COLUMN with bias, local and gathered output
  for (int gather = 0; gather < 2; gather++) {
    Mat w = make(dt, seed + 1, static_cast<size_t>(OUT * H), 0.2), b = make(dt, seed + 2, OUT);
    tppp_layer_params_init(&p, sizeof p);
    p.kind = TPPP_LAYER_COLUMN;
    p.dtype = dt;
    p.in_features = H;
    p.out_features = OUT;
    p.bias = 1;
    p.gather_output = gather;
    tppp_layer_t l = make_layer(c, p);
    RANK_CHECK(l, "create");
    const int64_t n = OUT / tp;
    Mat ws = rows(w, H, r * n, n, OUT), bs(b.begin() + r * n, b.begin() + (r + 1) * n);
    std::vector<char> wb = pack(dt, ws), bb = pack(dt, bs);
    tppp_tensor wt = tensor(wb.data(), dt, {n, H}), bt = tensor(bb.data(), dt, {n});
    RANK_OK(tppp_layer_bind(l, 0, &wt, &bt));
    Mat full = ref_linear(x, w, &b, m, OUT, H);
    if (gather) {
      if (check_forward(l, dt, xt, m, OUT, full, "COLUMN gathered")) return 1;
    } else {
      Mat mine(static_cast<size_t>(m * n));
      for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) mine[static_cast<size_t>(i * n + j)] = full[static_cast<size_t>(i * OUT + r * n + j)];
      if (check_forward(l, dt, xt, m, n, mine, "COLUMN")) return 1;
    }
    tppp_layer_destroy(l);
  }
  // ROW with bias, input parallel and split here
  for (int par = 0; par < 2; par++) {
    Mat w = make(dt, seed + 3, static_cast<size_t>(OUT * H), 0.2), b = make(dt, seed + 4, OUT);
    tppp_layer_params_init(&p, sizeof p);
    p.kind = TPPP_LAYER_ROW;
    p.dtype = dt;
    p.in_features = H;
    p.out_features = OUT;
    p.bias = 1;
    p.input_is_parallel = par;
    tppp_layer_t l = make_layer(c, p);
    RANK_CHECK(l, "create");
    const int64_t k = H / tp;
    std::vector<char> wb = pack(dt, cols(w, OUT, H, r * k, k)), bb = pack(dt, b);
    tppp_tensor wt = tensor(wb.data(), dt, {OUT, k}), bt = tensor(bb.data(), dt, {OUT});
    RANK_OK(tppp_layer_bind(l, 0, &wt, &bt));
    Mat full = ref_linear(x, w, &b, m, OUT, H);
    if (par) {
      std::vector<char> xs = pack(dt, cols(x, m, H, r * k, k));
      tppp_tensor xst = io.in(xs, dt, {m, k});
      if (check_forward(l, dt, xst, m, OUT, full, "ROW parallel input")) return 1;
    } else {
      if (check_forward(l, dt, xt, m, OUT, full, "ROW split here")) return 1;
    }
    tppp_layer_destroy(l);
  }
  {  // REPLICATED, no bias
    Mat w = make(dt, seed + 5, static_cast<size_t>(OUT * H), 0.2);
    tppp_layer_params_init(&p, sizeof p);
    p.kind = TPPP_LAYER_REPLICATED;
    p.dtype = dt;
    p.in_features = H;
    p.out_features = OUT;
    tppp_layer_t l = make_layer(c, p);
    RANK_CHECK(l, "create");
    std::vector<char> wb = pack(dt, w);
    tppp_tensor wt = tensor(wb.data(), dt, {OUT, H});
    RANK_OK(tppp_layer_bind(l, 0, &wt, nullptr));
    if (check_forward(l, dt, xt, m, OUT, ref_linear(x, w, nullptr, m, OUT, H), "REPLICATED")) return 1;
    tppp_layer_destroy(l);
  }
  {  // GATE_UP and MLP
    Mat wg = make(dt, seed + 6, static_cast<size_t>(I * H), 0.2), wu = make(dt, seed + 7, static_cast<size_t>(I * H), 0.2);
    Mat wd = make(dt, seed + 8, static_cast<size_t>(H * I), 0.2);
    const int64_t ir = I / tp;
    Mat gu = rows(wg, H, r * ir, ir, I), up = rows(wu, H, r * ir, ir, I);
    gu.insert(gu.end(), up.begin(), up.end());  // [gate_r; up_r]
    std::vector<char> gub = pack(dt, gu), db = pack(dt, cols(wd, H, I, r * ir, ir));
    tppp_tensor gut = tensor(gub.data(), dt, {2 * ir, H}), dt_ = tensor(db.data(), dt, {H, ir});
    Mat g = ref_linear(x, wg, nullptr, m, I, H), u = ref_linear(x, wu, nullptr, m, I, H), act(g.size()), act_dt(g.size());
    // The MLP's intermediate activations live in the layer dtype (as in HF
    // transformers): its reference rounds them there; everything else is f64.
    auto rnd = [dt](double v) {
      char b[8];
      th::store(dt, b, 0, v);
      return th::load(dt, b, 0);
    };
    for (size_t i = 0; i < g.size(); i++) {
      act[i] = silu(g[i]) * u[i];
      act_dt[i] = rnd(silu(rnd(g[i])) * rnd(u[i]));
    }
    for (int kind : {TPPP_LAYER_GATE_UP, TPPP_LAYER_MLP}) {
      tppp_layer_params_init(&p, sizeof p);
      p.kind = kind;
      p.dtype = dt;
      p.in_features = H;
      p.out_features = I;
      tppp_layer_t l = make_layer(c, p);
      RANK_CHECK(l, "create");
      RANK_OK(tppp_layer_bind(l, 0, &gut, nullptr));
      if (kind == TPPP_LAYER_GATE_UP) {
        Mat mine = cols(act, m, I, r * ir, ir);
        if (check_forward(l, dt, xt, m, ir, mine, "GATE_UP")) return 1;
      } else {
        RANK_OK(tppp_layer_bind(l, 1, &dt_, nullptr));
        if (check_forward(l, dt, xt, m, H, ref_linear(act_dt, wd, nullptr, m, H, I), "MLP")) return 1;
      }
      tppp_layer_destroy(l);
    }
  }
  for (int64_t kv : {int64_t(4), int64_t(2), int64_t(1)}) {  // QKV with bias; kv < tp replicates heads
    const int64_t nh = 8, hd = 8;
    Mat wq = make(dt, seed + 9, static_cast<size_t>(nh * hd * H), 0.2), wk = make(dt, seed + 10, static_cast<size_t>(kv * hd * H), 0.2),
        wv = make(dt, seed + 11, static_cast<size_t>(kv * hd * H), 0.2);
    Mat bq = make(dt, seed + 12, static_cast<size_t>(nh * hd)), bk = make(dt, seed + 13, static_cast<size_t>(kv * hd)),
        bv = make(dt, seed + 14, static_cast<size_t>(kv * hd));
    const int64_t qh = nh / tp, kvr = kv >= tp ? kv / tp : 1, kh0 = kv >= tp ? r * kvr : r * kv / tp;
    Mat w = rows(wq, H, r * qh * hd, qh * hd, nh * hd), t1 = rows(wk, H, kh0 * hd, kvr * hd, kv * hd),
        t2 = rows(wv, H, kh0 * hd, kvr * hd, kv * hd);
    w.insert(w.end(), t1.begin(), t1.end());
    w.insert(w.end(), t2.begin(), t2.end());
    Mat b(bq.begin() + r * qh * hd, bq.begin() + (r + 1) * qh * hd);
    b.insert(b.end(), bk.begin() + kh0 * hd, bk.begin() + (kh0 + kvr) * hd);
    b.insert(b.end(), bv.begin() + kh0 * hd, bv.begin() + (kh0 + kvr) * hd);
    const int64_t n = (qh + 2 * kvr) * hd;
    tppp_layer_params_init(&p, sizeof p);
    p.kind = TPPP_LAYER_QKV;
    p.dtype = dt;
    p.in_features = H;
    p.num_heads = nh;
    p.num_kv_heads = kv;
    p.head_dim = hd;
    p.bias = 1;
    tppp_layer_t l = make_layer(c, p);
    RANK_CHECK(l, "create");
    std::vector<char> wb = pack(dt, w), bb = pack(dt, b);
    tppp_tensor wt = tensor(wb.data(), dt, {n, H}), bt = tensor(bb.data(), dt, {n});
    RANK_OK(tppp_layer_bind(l, 0, &wt, &bt));
    if (check_forward(l, dt, xt, m, n, ref_linear(x, w, &b, m, n, H), "QKV")) return 1;
    tppp_layer_destroy(l);
  }
  {  // EMBEDDING and LM_HEAD, vocab 37: padded to a multiple of tp
    const int64_t V = 37, per = (V + tp - 1) / tp;
    Mat table = make(dt, seed + 15, static_cast<size_t>(V * H));
    std::vector<char> tb = pack(dt, rows(table, H, r * per, per, V));
    tppp_tensor tt = tensor(tb.data(), dt, {per, H});
    std::vector<int64_t> ids(static_cast<size_t>(m));
    for (int64_t i = 0; i < m; i++) ids[static_cast<size_t>(i)] = (i * 11 + 5) % V;
    tppp_layer_params_init(&p, sizeof p);
    p.kind = TPPP_LAYER_EMBEDDING;
    p.dtype = dt;
    p.in_features = H;
    p.vocab_size = V;
    tppp_layer_t l = make_layer(c, p);
    RANK_CHECK(l, "create");
    RANK_OK(tppp_layer_bind(l, 0, &tt, nullptr));
    Mat want(static_cast<size_t>(m * H));
    for (int64_t i = 0; i < m; i++)
      for (int64_t j = 0; j < H; j++) want[static_cast<size_t>(i * H + j)] = table[static_cast<size_t>(ids[static_cast<size_t>(i)] * H + j)];
    tppp_tensor it = io.in(ids.data(), ids.size() * 8, TPPP_DTYPE_I64, {m});
    if (check_forward(l, dt, it, m, H, want, "EMBEDDING")) return 1;
    tppp_layer_destroy(l);
    Mat logits = ref_linear(x, table, nullptr, m, V, H);
    for (int to0 = 0; to0 < 2; to0++) {
      p.kind = TPPP_LAYER_LM_HEAD;
      p.gather_to_rank0 = to0;
      l = make_layer(c, p);
      RANK_CHECK(l, "create");
      RANK_OK(tppp_layer_bind(l, 0, &tt, nullptr));
      if (!to0 || r == 0) {
        if (check_forward(l, dt, xt, m, V, logits, to0 ? "LM_HEAD to rank 0" : "LM_HEAD")) return 1;
      } else {
        RANK_OK(tppp_layer_forward(l, &xt, nullptr, nullptr));
      }
      std::vector<int64_t> got(static_cast<size_t>(m), -7);
      tppp_tensor gt = io.in(got.data(), got.size() * 8, TPPP_DTYPE_I64, {m});
      RANK_OK(tppp_layer_argmax(l, &xt, &gt, nullptr));
      RANK_CHECK(io.out(gt, got.data(), got.size() * 8), "argmax: copy back from the device");
      for (int64_t i = 0; i < m; i++) {  // the chosen logit is the max (within rounding)
        int64_t g = got[static_cast<size_t>(i)];
        RANK_CHECK(g >= 0 && g < V, "argmax row %lld: %lld", static_cast<long long>(i), static_cast<long long>(g));
        double best = -1e300;
        for (int64_t j = 0; j < V; j++) best = std::max(best, logits[static_cast<size_t>(i * V + j)]);
        RANK_CHECK(logits[static_cast<size_t>(i * V + g)] >= best - 4 * tol(dt) * std::fabs(best) - 1e-6,
                   "argmax row %lld picked %lld (%g) but max is %g", static_cast<long long>(i), static_cast<long long>(g),
                   logits[static_cast<size_t>(i * V + g)], best);
      }
      tppp_layer_destroy(l);
    }
  }
  return 0;
}

int layer_rank(int rank, const tppp_unique_id& id, int tp) {
  tppp_group_params gp = th::params(tp, 1, 60000);
  gp.device = test_device();
  tppp_group_t g = nullptr;
  RANK_OK(tppp_group_create(&id, tp, rank, &gp, &g));
  Ctx c{g, tp, rank};
  for (int32_t dt : {TPPP_DTYPE_F32, TPPP_DTYPE_BF16, TPPP_DTYPE_F16})
    for (int64_t m : {int64_t(1), int64_t(7), int64_t(64), int64_t(257)})
      if (run_layers(c, dt, m)) {
        tppp_group_destroy(g);
        return 1;
      }
  tppp_group_destroy(g);
  return 0;
}

}  // namespace

TEST_SUITE("layers") {
  TEST_CASE("every TP layer kind against float64: TP=1") {
    auto codes = th::run_ranks(1, 300, [](int r, const tppp_unique_id& id) { return layer_rank(r, id, 1); });
    CHECK_MESSAGE(th::all_zero(codes), th::codes_str(codes));
  }
  TEST_CASE("every TP layer kind against float64: TP=2") {
    auto codes = th::run_ranks(2, 300, [](int r, const tppp_unique_id& id) { return layer_rank(r, id, 2); });
    CHECK_MESSAGE(th::all_zero(codes), th::codes_str(codes));
  }
  TEST_CASE("every TP layer kind against float64: TP=4") {
    auto codes = th::run_ranks(4, 600, [](int r, const tppp_unique_id& id) { return layer_rank(r, id, 4); });
    CHECK_MESSAGE(th::all_zero(codes), th::codes_str(codes));
  }
}
