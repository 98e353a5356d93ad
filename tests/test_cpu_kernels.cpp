// The CPU backend's own kernels against float64 (docs/DESIGN.md section 9,
// "The CPU backend"): the packed GEMM in every storage dtype, across the
// decode (M <= 6) and blocked (K > 256) paths, N tails and row strides; the
// bf16 rounding bit for bit against core's scalar rule; silu; the paged
// flash attention over several sequences, prefill runs and decode tokens;
// and the thread pool. Outputs are poisoned before each run. The AVX2 and
// the portable kernels are both checked where the CPU has AVX2 (ctest also
// runs the model suite with TPPP_CPU_ISA=generic).
#include <doctest/doctest.h>
#include <unistd.h>
#include <sys/wait.h>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "backend/cpu/decoder_ops.hpp"
#include "backend/cpu/gemm.hpp"
#include "backend/cpu/simd.hpp"
#include "backend/cpu/thread_pool.hpp"
#include "core/dtype.hpp"

namespace {

using tppp::cpu::Kernels;

float rnd(uint64_t& s) {
  s = s * 6364136223846793005ull + 1442695040888963407ull;
  return static_cast<float>((s >> 40) & 0xffffff) / 8388608.0f - 1.0f;  // [-1, 1), never all zero
}

std::vector<const Kernels*> kernel_sets() {
  std::vector<const Kernels*> k{&tppp::cpu::generic_kernels()};
  if (tppp::cpu::avx2_kernels()) k.push_back(tppp::cpu::avx2_kernels());
  return k;
}

double rel_err(const std::vector<double>& ref, const float* got, size_t n, size_t stride = 1, size_t width = 0) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; i++) {
    const size_t at = width ? (i / width) * stride + i % width : i;
    num += (got[at] - ref[i]) * (got[at] - ref[i]);
    den += ref[i] * ref[i];
  }
  return std::sqrt(num / (den > 0 ? den : 1));
}

}  // namespace

TEST_SUITE("cpu_kernels") {
  TEST_CASE("packed GEMM equals float64 in every storage dtype, M, N tail, K block and row stride") {
    uint64_t s = 11;
    for (const Kernels* ks : kernel_sets())
      for (int32_t dt : {TPPP_DTYPE_F32, TPPP_DTYPE_BF16, TPPP_DTYPE_F16})
        for (int64_t k : {1, 7, 64, 300, 600})
          for (int64_t n : {1, 15, 16, 17, 100})
            for (int64_t m : {1, 2, 5, 6, 7, 13, 40})
              for (bool bias : {false, true}) {
                const std::string isa = ks->isa;
      CAPTURE(isa);
                CAPTURE(dt);
                CAPTURE(k);
                CAPTURE(n);
                CAPTURE(m);
                CAPTURE(bias);
                std::vector<float> w(static_cast<size_t>(n * k)), x(static_cast<size_t>(m * k)), b(static_cast<size_t>(n));
                for (auto& v : w) v = tppp::round_to(dt, rnd(s));  // exactly representable in the storage dtype
                for (auto& v : x) v = rnd(s);
                for (auto& v : b) v = rnd(s);
                tppp::cpu::PackedMatrix pm(w.data(), TPPP_DTYPE_F32, n, k, dt);
                const int64_t ldy = n + 3;
                std::vector<float> y(static_cast<size_t>(m * ldy), std::numeric_limits<float>::quiet_NaN());
                tppp::cpu::gemm(x.data(), m, k, pm, bias ? b.data() : nullptr, y.data(), ldy, ks);
                std::vector<double> ref(static_cast<size_t>(m * n));
                for (int64_t r = 0; r < m; r++)
                  for (int64_t c = 0; c < n; c++) {
                    double acc = bias ? b[static_cast<size_t>(c)] : 0.0;
                    for (int64_t i = 0; i < k; i++)
                      acc += static_cast<double>(x[static_cast<size_t>(r * k + i)]) * w[static_cast<size_t>(c * k + i)];
                    ref[static_cast<size_t>(r * n + c)] = acc;
                  }
                CHECK(rel_err(ref, y.data(), ref.size(), static_cast<size_t>(ldy), static_cast<size_t>(n)) < 1e-5);
                for (int64_t r = 0; r < m; r++)  // the stride's gap is never written
                  for (int64_t c = n; c < ldy; c++) CHECK(std::isnan(y[static_cast<size_t>(r * ldy + c)]));
              }
  }

  TEST_CASE("f32 weights rounded to bf16 once at pack; the GEMM reads each back exactly (x = identity)") {
    uint64_t s = 3;
    const int64_t n = 37, k = 29;
    std::vector<float> w(static_cast<size_t>(n * k)), eye(static_cast<size_t>(k * k), 0.0f);
    for (auto& v : w) v = rnd(s);
    for (int64_t c = 0; c < k; c++) eye[static_cast<size_t>(c * k + c)] = 1.0f;
    tppp::cpu::PackedMatrix pm(w.data(), TPPP_DTYPE_F32, n, k, TPPP_DTYPE_BF16);
    for (const Kernels* ks : kernel_sets()) {
      const std::string isa = ks->isa;
      CAPTURE(isa);
      std::vector<float> y(static_cast<size_t>(k * n), NAN);  // y[c, r] = W[r, c]
      tppp::cpu::gemm(eye.data(), k, k, pm, nullptr, y.data(), n, ks);
      for (int64_t r = 0; r < n; r++)
        for (int64_t c = 0; c < k; c++)
          CHECK(y[static_cast<size_t>(c * n + r)] == tppp::round_to(TPPP_DTYPE_BF16, w[static_cast<size_t>(r * k + c)]));
    }
  }

  TEST_CASE("bf16 rounding and widening bit for bit against core's scalar rule, specials included") {
    std::vector<float> src;
    uint64_t s = 5;
    for (int i = 0; i < 4000; i++) {
      s = s * 6364136223846793005ull + 1442695040888963407ull;
      const uint32_t u = static_cast<uint32_t>(s >> 32);
      float f;
      std::memcpy(&f, &u, 4);
      src.push_back(f);
    }
    for (float f : {0.0f, -0.0f, INFINITY, -INFINITY, NAN, 1.0f + 1.0f / 256, 1.0f + 3.0f / 256, 1e-40f, 3.4e38f})
      src.push_back(f);
    src.push_back(tppp::bf16_to_f32(0x7f80) * 1.0f);  // inf
    for (const Kernels* ks : kernel_sets()) {
      const std::string isa = ks->isa;
      CAPTURE(isa);
      std::vector<uint16_t> h(src.size(), 0xdead);
      ks->from_f32(src.data(), h.data(), TPPP_DTYPE_BF16, static_cast<int64_t>(src.size()));
      for (size_t i = 0; i < src.size(); i++) CHECK(h[i] == tppp::f32_to_bf16(src[i]));
      std::vector<float> back(src.size(), NAN);
      ks->to_f32(h.data(), TPPP_DTYPE_BF16, back.data(), static_cast<int64_t>(src.size()));
      for (size_t i = 0; i < src.size(); i++) {
        const float want = tppp::bf16_to_f32(h[i]);
        CHECK(std::memcmp(&back[i], &want, 4) == 0);
      }
      std::vector<uint16_t> f16(src.size());
      for (size_t i = 0; i < src.size(); i++) f16[i] = tppp::f32_to_f16(src[i]);
      ks->to_f32(f16.data(), TPPP_DTYPE_F16, back.data(), static_cast<int64_t>(src.size()));
      for (size_t i = 0; i < src.size(); i++) {
        const float want = tppp::f16_to_f32(f16[i]);
        CHECK(std::memcmp(&back[i], &want, 4) == 0);
      }
    }
  }

  TEST_CASE("silu(g) * u, dots, axpys and exp_sum against float64") {
    uint64_t s = 9;
    const int64_t n = 1003;
    std::vector<float> g(static_cast<size_t>(n)), u(static_cast<size_t>(n)), o(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; i++) g[static_cast<size_t>(i)] = rnd(s) * 30.0f, u[static_cast<size_t>(i)] = rnd(s);
    g[0] = 0, g[1] = -100, g[2] = 100, g[3] = -87.5f, g[4] = 1e-30f;
    for (const Kernels* ks : kernel_sets()) {
      const std::string isa = ks->isa;
      CAPTURE(isa);
      std::fill(o.begin(), o.end(), NAN);
      ks->silu_mul(g.data(), u.data(), o.data(), n);
      for (int64_t i = 0; i < n; i++) {
        const double x = g[static_cast<size_t>(i)];
        const double want = x / (1.0 + std::exp(-x)) * u[static_cast<size_t>(i)];
        CHECK(std::fabs(o[static_cast<size_t>(i)] - want) <= 4e-7 * std::fabs(want) + 1e-35);
      }
      double dref = 0;
      for (int64_t i = 0; i < n; i++) dref += static_cast<double>(g[static_cast<size_t>(i)]) * u[static_cast<size_t>(i)];
      float one = NAN;  // a long row (n % 8 != 0): the dots' general path
      ks->dots(g.data(), 1, n, u.data(), TPPP_DTYPE_F32, &one, 1);
      CHECK(std::fabs(one - dref) < 1e-5 * (std::fabs(dref) + 1));
      std::vector<uint16_t> ub(u.size());  // bf16 and f16 operands: widened exactly
      for (int32_t dt : {TPPP_DTYPE_BF16, TPPP_DTYPE_F16}) {
        double r16 = 0;
        for (int64_t i = 0; i < n; i++) {
          ub[static_cast<size_t>(i)] = dt == TPPP_DTYPE_BF16 ? tppp::f32_to_bf16(u[static_cast<size_t>(i)]) : tppp::f32_to_f16(u[static_cast<size_t>(i)]);
          r16 += static_cast<double>(g[static_cast<size_t>(i)]) * tppp::load_float(dt, ub.data(), static_cast<size_t>(i));
        }
        ks->dots(g.data(), 1, n, ub.data(), dt, &one, 1);
        CHECK(std::fabs(one - r16) < 1e-5 * (std::fabs(r16) + 1));
      }
      for (int64_t d : {64, 40, 24}) {  // several rows against one row: scores and P V
        const int64_t nq = 5;
        for (int32_t dt : {TPPP_DTYPE_F32, TPPP_DTYPE_BF16}) {
          std::vector<float> q(g.begin(), g.begin() + nq * d), o(u.begin(), u.begin() + nq * d), o0(o);
          const float* krow = u.data() + 500;
          std::vector<char> kd(static_cast<size_t>(d) * tppp::dtype_size(dt));
          tppp::convert_dtype(krow, TPPP_DTYPE_F32, kd.data(), dt, static_cast<size_t>(d));
          std::vector<float> sc(static_cast<size_t>(nq * 3), NAN), p = {0.5f, -1.0f, 2.0f, 0.0f, 3.0f};
          ks->dots(q.data(), nq, d, kd.data(), dt, sc.data(), 3);
          ks->axpys(o.data(), nq, d, p.data(), 1, kd.data(), dt);
          for (int64_t r = 0; r < nq; r++) {
            double want = 0;
            for (int64_t c = 0; c < d; c++)
              want += static_cast<double>(q[static_cast<size_t>(r * d + c)]) * tppp::load_float(dt, kd.data(), static_cast<size_t>(c));
            CHECK(std::fabs(sc[static_cast<size_t>(r * 3)] - want) < 1e-5 * (std::fabs(want) + 1));
            for (int64_t c = 0; c < d; c++)
              CHECK(o[static_cast<size_t>(r * d + c)] ==
                    doctest::Approx(o0[static_cast<size_t>(r * d + c)] + p[static_cast<size_t>(r)] * tppp::load_float(dt, kd.data(), static_cast<size_t>(c))).epsilon(1e-6));
          }
        }
      }
      std::vector<float> e(u), ex(u);
      const float mx = 1.5f;
      double esum = 0;
      for (auto& v : e) v = std::min(v * 40.0f, mx);  // exponents from -40 to 0
      ex = e;
      const float got_sum = ks->exp_sum(ex.data(), n, mx);
      for (int64_t i = 0; i < n; i++) {
        const double want = std::exp(static_cast<double>(e[static_cast<size_t>(i)] - mx));  // the difference in f32, as the kernels take it
        esum += want;
        CHECK(std::fabs(ex[static_cast<size_t>(i)] - want) <= 4e-7 * want + 1e-37);
      }
      CHECK(std::fabs(got_sum - esum) <= 1e-5 * esum);
      std::vector<float> y(u);
      const float two = 2.0f;
      ks->axpys(y.data(), 1, n, &two, 1, g.data(), TPPP_DTYPE_F32);
      for (int64_t i = 0; i < n; i++)
        CHECK(y[static_cast<size_t>(i)] == doctest::Approx(u[static_cast<size_t>(i)] + 2.0 * g[static_cast<size_t>(i)]).epsilon(1e-6));
    }
  }

  TEST_CASE("paged attention equals float64: sequences of 1, 70 and 130 positions, prefill runs and decode tokens") {
    for (int32_t dt : {TPPP_DTYPE_F32, TPPP_DTYPE_BF16})
      for (int64_t d : {64, 40}) {
        CAPTURE(dt);
        CAPTURE(d);
        const int64_t nh = 6, kvh = 2, group = nh / kvh, page = 16, npages = 20;
        const size_t es = tppp::dtype_size(dt);
        uint64_t s = 17;
        // Cache: npages x page x kvh x d, random; three sequences on shuffled pages.
        std::vector<float> kc(static_cast<size_t>(npages * page * kvh * d)), vc(kc.size());
        for (auto& v : kc) v = tppp::round_to(dt, rnd(s));
        for (auto& v : vc) v = tppp::round_to(dt, rnd(s));
        std::vector<char> kcd(kc.size() * es), vcd(vc.size() * es);
        tppp::convert_dtype(kc.data(), TPPP_DTYPE_F32, kcd.data(), dt, kc.size());
        tppp::convert_dtype(vc.data(), TPPP_DTYPE_F32, vcd.data(), dt, vc.size());
        const std::vector<int32_t> pages = {7, 2, 19, 0, 5, 11, 3, 8, 13, 1, 4, 9, 17};  // seq0: 1 page, seq1: 5, seq2: 9
        const int32_t off[3] = {0, 1, 4};
        // Tokens: seq1 decode (sees 70), seq2 a prefill run of its last 12 positions (sees 119..130), seq0 decode (1).
        std::vector<int32_t> kv_len, page_off;
        kv_len.push_back(70), page_off.push_back(off[1]);
        for (int i = 0; i < 12; i++) kv_len.push_back(119 + i), page_off.push_back(off[2]);
        kv_len.push_back(1), page_off.push_back(off[0]);
        // seq1 again: a run of 20 prefill tokens (more than one work item of 16) seeing 51..70.
        for (int i = 0; i < 20; i++) kv_len.push_back(51 + i), page_off.push_back(off[1]);
        const int64_t m = static_cast<int64_t>(kv_len.size()), ldq = nh * d + 5;
        std::vector<float> q(static_cast<size_t>(m * ldq));
        for (auto& v : q) v = tppp::round_to(dt, rnd(s));
        std::vector<char> qd(q.size() * es), out(static_cast<size_t>(m * nh * d) * es);
        tppp::convert_dtype(q.data(), TPPP_DTYPE_F32, qd.data(), dt, q.size());
        const float scale = 1.0f / std::sqrt(static_cast<float>(d));
        std::vector<double> ref(static_cast<size_t>(m * nh * d));
        for (int64_t t = 0; t < m; t++)
          for (int64_t h = 0; h < nh; h++) {
            const int64_t kh = h / group, len = kv_len[static_cast<size_t>(t)];
            std::vector<double> sc(static_cast<size_t>(len));
            double mx = -INFINITY, sum = 0;
            auto slot = [&](int64_t p) {
              return (static_cast<int64_t>(pages[static_cast<size_t>(page_off[static_cast<size_t>(t)] + p / page)]) * page + p % page) * kvh + kh;
            };
            for (int64_t p = 0; p < len; p++) {
              double a = 0;
              for (int64_t j = 0; j < d; j++)
                a += static_cast<double>(q[static_cast<size_t>(t * ldq + h * d + j)]) * kc[static_cast<size_t>(slot(p) * d + j)];
              sc[static_cast<size_t>(p)] = a * scale;
              mx = std::max(mx, a * scale);
            }
            for (auto& v : sc) sum += (v = std::exp(v - mx));
            for (int64_t j = 0; j < d; j++) {
              double o = 0;
              for (int64_t p = 0; p < len; p++) o += sc[static_cast<size_t>(p)] * vc[static_cast<size_t>(slot(p) * d + j)];
              ref[static_cast<size_t>((t * nh + h) * d + j)] = o / sum;
            }
          }
        std::vector<float> got(ref.size(), NAN);
        std::fill(out.begin(), out.end(), static_cast<char>(0xff));  // NaN in f32 and bf16
        tppp::cpu::attention(qd.data(), ldq, m, nh, kvh, d, kcd.data(), vcd.data(), page, kv_len.data(),
                             page_off.data(), pages.data(), scale, out.data(), dt);
        tppp::convert_dtype(out.data(), dt, got.data(), TPPP_DTYPE_F32, got.size());
        CHECK(rel_err(ref, got.data(), ref.size()) < (dt == TPPP_DTYPE_F32 ? 1e-6 : 8e-3));
      }
  }

  TEST_CASE("thread pool: every thread once per region, nested regions inline, a forked child makes its own") {
    tppp::cpu::ThreadPool p(3);
    for (int rep = 0; rep < 2000; rep++) {
      std::atomic<int> mask{0}, nts{0};
      p.parallel([&](int tid, int nt) {
        mask.fetch_or(1 << tid);
        nts.fetch_add(nt);
        p.parallel([&](int t2, int n2) { CHECK((t2 == 0 && n2 == 1)); });  // inline
      });
      REQUIRE(mask.load() == 7);
      REQUIRE(nts.load() == 9);
    }
    std::atomic<int> one{0};
    p.parallel([&](int, int nt) { one.fetch_add(nt); }, 1);
    CHECK(one.load() == 1);
    // The process pool survives fork: the child's first region makes a fresh pool.
    tppp::cpu::pool().parallel([](int, int) {});
    const pid_t pid = fork();
    if (pid == 0) {
      std::atomic<int> hits{0};
      tppp::cpu::pool().parallel([&](int, int) { hits.fetch_add(1); });
      _exit(hits.load() == tppp::cpu::pool().size() ? 0 : 1);
    }
    int st = 0;
    REQUIRE(waitpid(pid, &st, 0) == pid);
    CHECK((WIFEXITED(st) && WEXITSTATUS(st) == 0));
  }
}
