// bench/linear on a GPU: the TP=1 forward of a REPLICATED layer (y = x W^T,
// bf16, the CUDA backend: one cuBLASLt GEMM) through the C API, timed with
// CUDA events around each forward, cold L2 (the weights rotate through enough
// copies to exceed L2 several times), median of many runs. Also measures the
// device-to-device copy bandwidth (bytes read + written) as the memory
// ceiling. Output lines (bench/linear_gpu.sh merges them with torch's):
//   copy GBPS
//   ours bf16 M K N US_MEDIAN
// Every shape's output is checked against a float64 dot product of a few
// entries (poisoned first), so a fast wrong answer fails the run.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "bench_util.hpp"
#include "c_api.h"
#include "core/dtype.hpp"

namespace {

#define CK(call)                                                                            \
  do {                                                                                      \
    cudaError_t e_ = (call);                                                                \
    if (e_ != cudaSuccess) {                                                                \
      std::fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_)); \
      std::exit(1);                                                                         \
    }                                                                                       \
  } while (0)

uint64_t lcg = 0x9e3779b97f4a7c15ull;
float urand() {  // [-0.5, 0.5)
  lcg = lcg * 6364136223846793005ull + 1442695040888963407ull;
  return static_cast<float>((lcg >> 40) & 0xffffff) / 16777216.0f - 0.5f;
}

double median(std::vector<float> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  CK(cudaSetDevice(0));
  cudaDeviceProp prop;
  CK(cudaGetDeviceProperties(&prop, 0));
  std::printf("gpu %s\n", prop.name);
  cudaStream_t s;
  CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  cudaEvent_t ea, eb;
  CK(cudaEventCreate(&ea));
  CK(cudaEventCreate(&eb));
  {  // copy ceiling: 1 GiB device-to-device, bytes read + written
    const size_t n = size_t(1) << 30;
    void *a, *b;
    CK(cudaMalloc(&a, n));
    CK(cudaMalloc(&b, n));
    CK(cudaMemset(a, 1, n));
    std::vector<float> t;
    for (int i = 0; i < 12; i++) {
      CK(cudaEventRecord(ea, s));
      CK(cudaMemcpyAsync(b, a, n, cudaMemcpyDeviceToDevice, s));
      CK(cudaEventRecord(eb, s));
      CK(cudaEventSynchronize(eb));
      float ms;
      CK(cudaEventElapsedTime(&ms, ea, eb));
      if (i >= 2) t.push_back(ms);
    }
    std::printf("copy %.1f\n", 2.0 * n / (median(t) * 1e-3) / 1e9);
    CK(cudaFree(a));
    CK(cudaFree(b));
  }
  tppp_unique_id id;
  CHECK(tppp_get_unique_id(&id));
  tppp_group_params gp;
  tppp_group_params_init(&gp, sizeof gp);
  gp.device = 0;
  tppp_group_t g;
  CHECK(tppp_group_create(&id, 1, 0, &gp, &g));
  const int64_t shapes[][2] = {{4096, 4096}, {4096, 14336}, {14336, 4096}, {8192, 28672}};
  const int64_t ms[] = {1, 8, 32, 128, 256};
  const int reps = quick ? 10 : 60;
  for (auto& kn : shapes) {
    const int64_t K = kn[0], N = kn[1];
    const size_t wbytes = static_cast<size_t>(N * K) * 2;
    const int copies = static_cast<int>(std::max<size_t>(2, (size_t(400) << 20) / wbytes + 1));  // >= 400 MB of weights
    std::vector<uint16_t> w(static_cast<size_t>(N * K));
    std::vector<float> wf(w.size());
    for (size_t i = 0; i < w.size(); i++) {
      w[i] = tppp::f32_to_bf16(urand() * 0.1f);
      wf[i] = tppp::bf16_to_f32(w[i]);
    }
    std::vector<tppp_layer_t> layers(static_cast<size_t>(copies));
    tppp_layer_params lp;
    tppp_layer_params_init(&lp, sizeof lp);
    lp.kind = TPPP_LAYER_REPLICATED;
    lp.dtype = TPPP_DTYPE_BF16;
    lp.in_features = K;
    lp.out_features = N;
    const tppp_tensor wt = tensor2d(w.data(), TPPP_DTYPE_BF16, N, K);
    for (auto& l : layers) {
      CHECK(tppp_layer_create(g, &lp, &l));
      CHECK(tppp_layer_bind(l, 0, &wt, nullptr));
    }
    for (int64_t M : ms) {
      std::vector<uint16_t> x(static_cast<size_t>(M * K));
      for (auto& v : x) v = tppp::f32_to_bf16(urand());
      void *dx, *dy;
      CK(cudaMalloc(&dx, x.size() * 2));
      CK(cudaMalloc(&dy, static_cast<size_t>(M * N) * 2));
      CK(cudaMemcpy(dx, x.data(), x.size() * 2, cudaMemcpyHostToDevice));
      CK(cudaMemset(dy, 0xff, static_cast<size_t>(M * N) * 2));  // poison (bf16 NaN)
      const tppp_tensor xt = tensor2d(dx, TPPP_DTYPE_BF16, M, K, TPPP_MEM_CUDA, 0),
                        yt = tensor2d(dy, TPPP_DTYPE_BF16, M, N, TPPP_MEM_CUDA, 0);
      for (int i = 0; i < 3; i++) CHECK(tppp_layer_forward(layers[static_cast<size_t>(i % copies)], &xt, &yt, s));
      CK(cudaStreamSynchronize(s));
      {  // correctness: a few outputs of the last forward against float64
        std::vector<uint16_t> y(static_cast<size_t>(M * N));
        CK(cudaMemcpy(y.data(), dy, y.size() * 2, cudaMemcpyDeviceToHost));
        double num = 0, den = 0;
        for (int t = 0; t < 64; t++) {
          const int64_t r = (t * 7919) % M, c = (t * 104729) % N;
          double ref = 0;
          for (int64_t j = 0; j < K; j++) ref += static_cast<double>(tppp::bf16_to_f32(x[static_cast<size_t>(r * K + j)])) *
                                                 wf[static_cast<size_t>(c * K + j)];
          const double got = tppp::bf16_to_f32(y[static_cast<size_t>(r * N + c)]);
          num += (got - ref) * (got - ref);
          den += ref * ref;
        }
        const double e = std::sqrt(num / den);
        if (!(e < 1e-2)) {
          std::fprintf(stderr, "WRONG: M %lld K %lld N %lld rel err %g\n", static_cast<long long>(M),
                       static_cast<long long>(K), static_cast<long long>(N), e);
          return 1;
        }
      }
      std::vector<cudaEvent_t> ev(static_cast<size_t>(2 * reps));
      for (auto& e : ev) CK(cudaEventCreate(&e));
      for (int i = 0; i < reps; i++) {
        CK(cudaEventRecord(ev[static_cast<size_t>(2 * i)], s));
        CHECK(tppp_layer_forward(layers[static_cast<size_t>(i % copies)], &xt, &yt, s));
        CK(cudaEventRecord(ev[static_cast<size_t>(2 * i + 1)], s));
      }
      CK(cudaStreamSynchronize(s));
      std::vector<float> t;
      for (int i = 0; i < reps; i++) {
        float msf;
        CK(cudaEventElapsedTime(&msf, ev[static_cast<size_t>(2 * i)], ev[static_cast<size_t>(2 * i + 1)]));
        t.push_back(msf * 1000.0f);
      }
      for (auto& e : ev) cudaEventDestroy(e);
      std::printf("ours bf16 %lld %lld %lld %.2f\n", static_cast<long long>(M), static_cast<long long>(K),
                  static_cast<long long>(N), median(t));
      std::fflush(stdout);
      CK(cudaFree(dx));
      CK(cudaFree(dy));
    }
    for (auto& l : layers) tppp_layer_destroy(l);
  }
  tppp_group_destroy(g);
  return 0;
}
