// What the C++ benchmarks share: a status check that exits with the
// library's message, the group a launcher started, a 2-D tensor view, and the
// p2p stream loop of comm_bench and comm_raw_ucx. (The C examples and benches keep
// their own few lines on purpose: each is a standalone file to read.)
#pragma once
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "c_api.h"

#define CHECK(call)                                                                            \
  do {                                                                                         \
    tppp_status s_ = (call);                                                                   \
    if (s_ != TPPP_OK) {                                                                       \
      std::fprintf(stderr, "%s: %s: %s\n", #call, tppp_status_string(s_), tppp_last_error()); \
      std::exit(1);                                                                            \
    }                                                                                          \
  } while (0)

// data[rows, cols] of dt, contiguous, in host memory unless told otherwise.
inline tppp_tensor tensor2d(void* data, int32_t dt, int64_t rows, int64_t cols, int32_t mem_kind = TPPP_MEM_HOST,
                            int32_t device = -1) {
  tppp_tensor t{};
  t.data = data;
  t.mem_kind = mem_kind;
  t.device = device;
  t.dtype = dt;
  t.ndim = 2;
  t.shape[0] = rows;
  t.shape[1] = cols;
  return t;
}

// The group tppp-run (or another launcher) started this process into; *info filled.
inline tppp_group_t group_from_env(int32_t timeout_ms, tppp_group_info* info) {
  tppp_group_params p;
  CHECK(tppp_group_params_init(&p, sizeof p));
  p.timeout_ms = timeout_ms;
  tppp_group_t g = nullptr;
  CHECK(tppp_group_create_from_env(&p, &g));
  info->struct_size = sizeof *info;
  CHECK(tppp_group_get_info(g, info));
  return g;
}

// ucx_perftest tag_bw's shape, which comm_bench and comm_raw_ucx both keep:
// 32 sends in flight; the receiver keeps one receive posted (ucp_tests.cc:
// wait_recv_window(1) before each receive). Messages per size as bench/comm.sh
// gives ucx_perftest: tens of milliseconds at every size.
constexpr int kBwSendWindow = 32, kBwRecvWindow = 1;
inline int bw_messages(size_t size) {
  return size <= 4096 ? 200000 : size <= (64u << 10) ? 20000 : size <= (1u << 20) ? 2000 : 500;
}

// The stream loop both run, so libtppp and UCX alone post and wait message
// for message alike: n operations, reqs.size() in flight, a new one posted as
// the oldest ends. post() returns an operation; finish(op) ends it.
template <typename Op, typename Post, typename Finish>
void windowed(std::vector<Op>& reqs, int n, Post post, Finish finish) {
  const int window = static_cast<int>(reqs.size());
  for (int i = 0; i < n + window; i++) {
    Op& r = reqs[static_cast<size_t>(i % window)];
    if (i >= window) finish(r);
    if (i < n) r = post();
  }
}
