// linear_bench: TP layer forward time on the CPU backend.
//   tppp-run -n 1 -- linear_bench    TP=1: our REPLICATED layer beside
//                                    cblas_sgemm called directly on the same
//                                    f32 matrices (bf16: the same GEMM on the
//                                    f32 values; ours adds the conversions)
//   tppp-run -n 2 -- linear_bench    TP=2: COLUMN (no gather) and ROW
//                                    (all-reduce) layers, rank 0 reports
// Prints "tp DTYPE M K N KIND ours_us [direct_us]": medians over repetitions.
//   linear_bench --core              the kernels OpenBLAS picked on this CPU
#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "bench_util.hpp"
#include "c_api.h"
#include "core/dtype.hpp"

using Clock = std::chrono::steady_clock;

template <typename F>
double median_us(F&& f, int reps) {
  std::vector<double> t;
  for (int i = 0; i < 3; i++) f();  // warm-up
  for (int i = 0; i < reps; i++) {
    auto a = Clock::now();
    f();
    t.push_back(std::chrono::duration<double, std::micro>(Clock::now() - a).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

int main(int argc, char** argv) {
  if (argc > 1 && std::string(argv[1]) == "--core") {  // the kernels OpenBLAS picked on this CPU
    std::printf("Core: %s\n", openblas_get_corename());
    return 0;
  }
  tppp_group_info info;
  tppp_group_t g = group_from_env(600000, &info);
  const int tp = info.tp_size, r = info.tp_rank;
  const int64_t Ms[] = {1, 4, 16, 128, 512};
  // A 7B-class layer's shapes, then SmolLM2-135M's (hidden 576: gate_up, down).
  const int64_t KN[][2] = {{1024, 4096}, {4096, 1024}, {2048, 8192}, {576, 3072}, {1536, 576}};
  for (int32_t dt : {TPPP_DTYPE_F32, TPPP_DTYPE_BF16}) {
    for (auto& kn : KN) {
      const int64_t K = kn[0], N = kn[1];
      std::vector<float> wf(static_cast<size_t>(N * K));
      for (size_t i = 0; i < wf.size(); i++) wf[i] = static_cast<float>((i * 2654435761u % 1000) / 1000.0 - 0.5);
      for (int64_t M : Ms) {
        const size_t es = tppp::dtype_size(dt);
        std::vector<float> xf(static_cast<size_t>(M * K), 0.25f), yf(static_cast<size_t>(M * N));
        std::vector<char> x(static_cast<size_t>(M * K) * es), y(static_cast<size_t>(M * N) * es);
        for (size_t i = 0; i < xf.size(); i++) {
          xf[i] = static_cast<float>((i % 17) / 17.0 - 0.4);
          if (dt == TPPP_DTYPE_F32)
            reinterpret_cast<float*>(x.data())[i] = xf[i];
          else
            reinterpret_cast<uint16_t*>(x.data())[i] = tppp::f32_to_bf16(xf[i]);
        }
        const int reps = M * K * N > 2000000000 ? 5 : M * K * N > 200000000 ? 15 : 40;
        auto make = [&](int kind, int64_t rows, int64_t cols, const float* src, int64_t ld, int64_t r0, int64_t c0) {
          tppp_layer_params p;
          tppp_layer_params_init(&p, sizeof p);
          p.kind = kind;
          p.dtype = dt;
          p.in_features = K;
          p.out_features = N;
          tppp_layer_t l = nullptr;
          CHECK(tppp_layer_create(g, &p, &l));
          std::vector<float> shard(static_cast<size_t>(rows * cols));
          for (int64_t i = 0; i < rows; i++)
            for (int64_t j = 0; j < cols; j++) shard[static_cast<size_t>(i * cols + j)] = src[(r0 + i) * ld + c0 + j];
          tppp_tensor wt = tensor2d(shard.data(), TPPP_DTYPE_F32, rows, cols);
          CHECK(tppp_layer_bind(l, 0, &wt, nullptr));
          return l;
        };
        const char* dn = dt == TPPP_DTYPE_F32 ? "f32" : "bf16";
        if (tp == 1) {
          tppp_layer_t l = make(TPPP_LAYER_REPLICATED, N, K, wf.data(), K, 0, 0);
          tppp_tensor xt = tensor2d(x.data(), dt, M, K), yt = tensor2d(y.data(), dt, M, N);
          // OpenBLAS's threads spin (sched_yield) for a while after its last call: let them sleep first.
          std::this_thread::sleep_for(std::chrono::milliseconds(300));
          double ours = median_us([&] { CHECK(tppp_layer_forward(l, &xt, &yt, nullptr)); }, reps);
          double direct = median_us(
              [&] {
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<blasint>(M), static_cast<blasint>(N),
                            static_cast<blasint>(K), 1.0f, xf.data(), static_cast<blasint>(K), wf.data(),
                            static_cast<blasint>(K), 0.0f, yf.data(), static_cast<blasint>(N));
              },
              reps);
          std::printf("tp1 %s %lld %lld %lld replicated %.1f %.1f\n", dn, static_cast<long long>(M),
                      static_cast<long long>(K), static_cast<long long>(N), ours, direct);
          tppp_layer_destroy(l);
        } else {
          tppp_layer_t col = make(TPPP_LAYER_COLUMN, N / tp, K, wf.data(), K, r * (N / tp), 0);
          std::vector<char> yc(static_cast<size_t>(M * N / tp) * es);
          tppp_tensor xt = tensor2d(x.data(), dt, M, K), yct = tensor2d(yc.data(), dt, M, N / tp);
          CHECK(tppp_barrier(g, TPPP_SCOPE_WORLD));
          double tc = median_us([&] { CHECK(tppp_layer_forward(col, &xt, &yct, nullptr)); }, reps);
          tppp_layer_t row = make(TPPP_LAYER_ROW, N, K / tp, wf.data(), K, 0, r * (K / tp));
          tppp_tensor xr = tensor2d(x.data(), dt, M, K / tp), yt = tensor2d(y.data(), dt, M, N);  // x rows reused as [M, K/tp]
          CHECK(tppp_barrier(g, TPPP_SCOPE_WORLD));
          double tr = median_us([&] { CHECK(tppp_layer_forward(row, &xr, &yt, nullptr)); }, reps);
          if (r == 0) {
            std::printf("tp%d %s %lld %lld %lld column %.1f\n", tp, dn, static_cast<long long>(M),
                        static_cast<long long>(K), static_cast<long long>(N), tc);
            std::printf("tp%d %s %lld %lld %lld row %.1f\n", tp, dn, static_cast<long long>(M),
                        static_cast<long long>(K), static_cast<long long>(N), tr);
          }
          tppp_layer_destroy(col);
          tppp_layer_destroy(row);
        }
        std::fflush(stdout);
      }
    }
  }
  tppp_group_destroy(g);
  return 0;
}
