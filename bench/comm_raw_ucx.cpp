// comm_raw_ucx: UCX alone, in comm_bench's bw loop. bench/comm.sh runs it
// beside libtppp and ucx_perftest so the table separates what libtppp's p2p
// path costs (libtppp vs this, same loop, same UCX) from what the loop's
// shape costs (this vs ucx_perftest). libtppp is only the bootstrap here: the
// group exchanges the worker addresses, then every message is a bare
// ucp_tag_send_nbx / ucp_tag_recv_nbx on a worker of this program's own.
//   tppp-run -n 2 -- comm_raw_ucx [--work-send=N] [--work-recv=N] SIZE...
// prints "raw SIZE MB/s" on rank 0. --work-*: N dependent memory increments
// (~5 cycles each) after each post on that side, to show how the rate turns
// on which side is faster (bench/results/comm-2026-12-06-vm.md).
#include <ucp/api/ucp.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "bench_util.hpp"
#include "c_api.h"

#define UCK(x)                                                                        \
  do {                                                                                \
    ucs_status_t s_ = (x);                                                            \
    if (s_ != UCS_OK) {                                                               \
      std::fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #x, ucs_status_string(s_)); \
      std::exit(1);                                                                   \
    }                                                                                 \
  } while (0)

namespace {

constexpr size_t kAddrMax = 4096;  // bytes of a worker address, padded for all_gather

struct Ucx {
  ucp_context_h ctx = nullptr;
  ucp_worker_h worker = nullptr;
  ucp_ep_h ep = nullptr;
};

// Drives one operation (NULL: finished in place) to its end; exits on error.
void wait(Ucx& u, ucs_status_ptr_t sp) {
  if (sp == nullptr) return;
  if (UCS_PTR_IS_ERR(sp)) UCK(UCS_PTR_STATUS(sp));
  ucs_status_t s;
  while ((s = ucp_request_check_status(sp)) == UCS_INPROGRESS) ucp_worker_progress(u.worker);
  ucp_request_free(sp);
  UCK(s);
}

// comm_bench's bw (bench/comm_bench.cpp), message for message: one buffer,
// bench_util.hpp's windowed loop and windows, a warm-up pass, a one-byte ack.
void bw(Ucx& u, tppp_group_t g, int rank, size_t size, int iters, bool report, int work) {
  const int window = rank == 0 ? kBwSendWindow : kBwRecvWindow;
  std::vector<char> buf(size, 1);  // [size] bytes, host
  std::vector<ucs_status_ptr_t> reqs(static_cast<size_t>(window));
  char ack = 0;
  ucp_request_param_t prm;
  prm.op_attr_mask = 0;
  volatile int sink = 0;  // --work-*'s increments land here
  auto post = [&] {
    ucs_status_ptr_t r = rank == 0 ? ucp_tag_send_nbx(u.ep, buf.data(), size, 1, &prm)
                                   : ucp_tag_recv_nbx(u.worker, buf.data(), size, 1, ~0ull, &prm);
    for (int k = 0; k < work; k++) sink = sink + 1;
    return r;
  };
  for (int pass = 0; pass < 2; pass++) {
    const int n = pass == 0 ? std::max(iters / 10, window) : iters;
    CHECK(tppp_barrier(g, TPPP_SCOPE_WORLD));
    const auto t0 = std::chrono::steady_clock::now();
    windowed(reqs, n, post, [&](ucs_status_ptr_t r) { wait(u, r); });
    wait(u, rank == 0 ? ucp_tag_recv_nbx(u.worker, &ack, 1, 2, ~0ull, &prm) : ucp_tag_send_nbx(u.ep, &ack, 1, 2, &prm));
    const double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (pass == 1 && rank == 0 && report)
      std::printf("raw %zu %.2f\n", size, static_cast<double>(size) * n / t / (1024.0 * 1024.0));
  }
}

}  // namespace

int main(int argc, char** argv) {
  tppp_group_info info;
  tppp_group_t g = group_from_env(120000, &info);
  if (info.world_size != 2) {
    std::fprintf(stderr, "comm_raw_ucx runs on exactly 2 ranks\n");
    return 1;
  }
  Ucx u;  // as UcxTransport sets it up: tag feature, a single-threaded worker
  ucp_config_t* config = nullptr;
  UCK(ucp_config_read(nullptr, nullptr, &config));
  ucp_params_t up{};
  up.field_mask = UCP_PARAM_FIELD_FEATURES;
  up.features = UCP_FEATURE_TAG;
  UCK(ucp_init(&up, config, &u.ctx));
  ucp_config_release(config);
  ucp_worker_params_t wp{};
  wp.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
  wp.thread_mode = UCS_THREAD_MODE_SINGLE;
  UCK(ucp_worker_create(u.ctx, &wp, &u.worker));
  ucp_address_t* addr = nullptr;
  size_t addr_len = 0;
  UCK(ucp_worker_get_address(u.worker, &addr, &addr_len));
  if (addr_len > kAddrMax) {
    std::fprintf(stderr, "worker address of %zu bytes > %zu\n", addr_len, kAddrMax);
    return 1;
  }
  std::vector<char> mine(kAddrMax), all(2 * kAddrMax);  // [kAddrMax] and [2][kAddrMax] bytes
  std::memcpy(mine.data(), addr, addr_len);
  ucp_worker_release_address(u.worker, addr);
  CHECK(tppp_all_gather(g, TPPP_SCOPE_WORLD, mine.data(), all.data(), kAddrMax, TPPP_DTYPE_U8, nullptr));
  ucp_ep_params_t ep{};
  ep.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS;
  ep.address = reinterpret_cast<const ucp_address_t*>(all.data() + kAddrMax * static_cast<size_t>(1 - info.rank));
  UCK(ucp_ep_create(u.worker, &ep, &u.ep));

  int work_send = 0, work_recv = 0;
  std::vector<size_t> sizes;
  for (int i = 1; i < argc; i++) {
    if (std::strncmp(argv[i], "--work-send=", 12) == 0)
      work_send = std::atoi(argv[i] + 12);
    else if (std::strncmp(argv[i], "--work-recv=", 12) == 0)
      work_recv = std::atoi(argv[i] + 12);
    else
      sizes.push_back(std::strtoull(argv[i], nullptr, 10));
  }
  const int work = info.rank == 0 ? work_send : work_recv;
  for (int k = 0; k < 3; k++) bw(u, g, info.rank, 8, 200000, false, work);  // warm-up, as comm_bench
  for (size_t s : sizes) {
    bw(u, g, info.rank, s, bw_messages(s), true, work);
  }
  CHECK(tppp_barrier(g, TPPP_SCOPE_WORLD));  // both done before either closes its endpoint
  ucp_request_param_t cp{};
  wait(u, ucp_ep_close_nbx(u.ep, &cp));
  CHECK(tppp_barrier(g, TPPP_SCOPE_WORLD));
  ucp_worker_destroy(u.worker);
  ucp_cleanup(u.ctx);
  tppp_group_destroy(g);
  return 0;
}
