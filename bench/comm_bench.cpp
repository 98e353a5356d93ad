// comm_bench: libtppp's p2p bandwidth/latency and all_reduce time between 2
// processes, measured the way the peers measure (bench/comm.sh runs it
// beside ucx_perftest and Open MPI):
//   bw  SIZE : rank 0 streams ITERS messages of one buffer to rank 1, 32
//              sends in flight, one receive posted at a time (like
//              ucx_perftest tag_bw); MB/s = 2^20 B/s
//   lat 8    : ping-pong, half the round trip (like ucx_perftest tag_lat)
//   ar  BYTES: all_reduce f32 sum, 8 B .. BYTES, mean per call of the slowest
//              rank (like mpi_allreduce.c); any number of ranks
// Run: tppp-run -n 2 -- comm_bench [bw|lat|ar] [args]; prints "key value" lines.
// For profiling: COMM_BENCH_ITERS, COMM_BENCH_WINDOW (32), COMM_BENCH_AR_ITERS.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "bench_util.hpp"
#include "c_api.h"

using Clock = std::chrono::steady_clock;
static double secs(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

static int bw_iters(size_t size) {
  if (const char* e = std::getenv("COMM_BENCH_ITERS")) return std::atoi(e);  // for profiling
  return bw_messages(size);
}

static void bw(tppp_group_t g, int rank, size_t size, int iters, bool report) {
  // Like ucx_perftest tag_bw: one buffer for every message, the sends and
  // receives in flight of bench_util.hpp's windowed loop.
  const char* w = std::getenv("COMM_BENCH_WINDOW");  // for profiling; the table uses kBwSendWindow
  const int window = rank == 1 ? kBwRecvWindow : w ? std::max(1, std::atoi(w)) : kBwSendWindow;
  std::vector<char> buf(size, 1);  // [size] bytes, host
  std::vector<tppp_request_t> reqs(static_cast<size_t>(window));
  char ack = 0;
  auto post = [&] {
    tppp_request_t r = nullptr;
    if (rank == 0)
      CHECK(tppp_isend(g, TPPP_SCOPE_WORLD, 1, 1, buf.data(), size, nullptr, &r));
    else
      CHECK(tppp_irecv(g, TPPP_SCOPE_WORLD, 0, 1, buf.data(), size, nullptr, &r));
    return r;
  };
  auto finish = [](tppp_request_t r) {
    CHECK(tppp_request_wait(r));
    tppp_request_free(r);
  };
  for (int pass = 0; pass < 2; pass++) {  // pass 0 warms up
    int n = pass == 0 ? std::max(iters / 10, window) : iters;
    CHECK(tppp_barrier(g, TPPP_SCOPE_WORLD));
    auto t0 = Clock::now();
    windowed(reqs, n, post, finish);
    if (rank == 0)
      CHECK(tppp_recv(g, TPPP_SCOPE_WORLD, 1, 2, &ack, 1, nullptr));
    else
      CHECK(tppp_send(g, TPPP_SCOPE_WORLD, 0, 2, &ack, 1, nullptr));
    double t = secs(t0, Clock::now());
    if (pass == 1 && rank == 0 && report)
      std::printf("bw %zu %.2f\n", size, static_cast<double>(size) * n / t / (1024.0 * 1024.0));
  }
}

static void lat(tppp_group_t g, int rank, size_t size, int iters) {
  std::vector<char> buf(size, 1);
  for (int pass = 0; pass < 2; pass++) {
    int n = pass == 0 ? iters / 10 : iters;
    CHECK(tppp_barrier(g, TPPP_SCOPE_WORLD));
    auto t0 = Clock::now();
    for (int i = 0; i < n; i++) {
      if (rank == 0) {
        CHECK(tppp_send(g, TPPP_SCOPE_WORLD, 1, 3, buf.data(), size, nullptr));
        CHECK(tppp_recv(g, TPPP_SCOPE_WORLD, 1, 3, buf.data(), size, nullptr));
      } else {
        CHECK(tppp_recv(g, TPPP_SCOPE_WORLD, 0, 3, buf.data(), size, nullptr));
        CHECK(tppp_send(g, TPPP_SCOPE_WORLD, 0, 3, buf.data(), size, nullptr));
      }
    }
    double t = secs(t0, Clock::now());
    if (pass == 1 && rank == 0) std::printf("lat %zu %.3f\n", size, t / n / 2 * 1e6);
  }
}

static void allreduce(tppp_group_t g, int rank, int world, size_t max_bytes) {
  {  // process start-up settles first (mpi_allreduce.c does the same)
    float a[2] = {1, 1}, b[2];
    for (int i = 0; i < 20000; i++)
      CHECK(tppp_all_reduce(g, TPPP_SCOPE_WORLD, a, b, 2, TPPP_DTYPE_F32, TPPP_OP_SUM, nullptr));
  }
  for (size_t bytes = 8; bytes <= max_bytes; bytes *= 2) {
    size_t count = bytes / 4;
    std::vector<float> x(count, 1.0f), y(count);
    int iters = bytes <= 4096 ? 20000 : bytes <= (64 << 10) ? 2000 : (bytes <= (1 << 20) ? 200 : 40);
    if (const char* e = std::getenv("COMM_BENCH_AR_ITERS")) iters = std::atoi(e);  // for profiling
    std::vector<double> t(static_cast<size_t>(iters));
    for (int i = 0; i < iters / 10 + 2; i++)  // warm-up
      CHECK(tppp_all_reduce(g, TPPP_SCOPE_WORLD, x.data(), y.data(), count, TPPP_DTYPE_F32, TPPP_OP_SUM, nullptr));
    CHECK(tppp_barrier(g, TPPP_SCOPE_WORLD));
    auto t0 = Clock::now();
    for (int i = 0; i < iters; i++)
      CHECK(tppp_all_reduce(g, TPPP_SCOPE_WORLD, x.data(), y.data(), count, TPPP_DTYPE_F32, TPPP_OP_SUM, nullptr));
    double avg = secs(t0, Clock::now()) / iters;
    // The slower rank's average is what a user waits for (mpi_allreduce.c reports the same).
    std::vector<double> all(static_cast<size_t>(world));  // the f64 bits travel as I64
    CHECK(tppp_all_gather(g, TPPP_SCOPE_WORLD, &avg, all.data(), 1, TPPP_DTYPE_I64, nullptr));
    if (rank == 0) std::printf("ar %zu %.3f\n", bytes, *std::max_element(all.begin(), all.end()) * 1e6);
    if (y[0] != static_cast<float>(world) || y[count - 1] != static_cast<float>(world)) {
      std::fprintf(stderr, "all_reduce result %g != %d\n", y[0], world);
      std::exit(1);
    }
  }
}

int main(int argc, char** argv) {
  std::string what = argc > 1 ? argv[1] : "ar";
  tppp_group_info info;
  tppp_group_t g = group_from_env(120000, &info);
  if (what != "ar" && info.world_size != 2) {
    std::fprintf(stderr, "comm_bench %s runs on exactly 2 ranks\n", what.c_str());
    return 1;
  }
  if (what == "bw") {
    // A process's first few hundred ms of messages run several times slower
    // here (ucx_perftest warms up too): stream 8-byte messages first.
    for (int k = 0; k < 3; k++) bw(g, info.rank, 8, 200000, false);
    for (int i = 2; i < argc; i++) {
      size_t s = std::strtoull(argv[i], nullptr, 10);
      bw(g, info.rank, s, bw_iters(s), true);
    }
  } else if (what == "lat") {
    for (int k = 0; k < 3; k++) bw(g, info.rank, 8, 200000, false);  // as for bw
    lat(g, info.rank, argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 8, 200000);
  } else {
    allreduce(g, info.rank, info.world_size, argc > 2 ? std::strtoull(argv[2], nullptr, 10) : (16u << 20));
  }
  tppp_group_destroy(g);
  return 0;
}
