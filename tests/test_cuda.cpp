// CUDA backend and transports on a GPU (suite "cuda"; CUDA builds; runs
// where TPPP_TEST_DEVICE names a GPU, skips with a message elsewhere): every
// backend op against the CPU backend (the oracle), graph capture of layer
// forwards, NCCL at world size 1, device buffers between ranks sharing one
// GPU over UCX, deadlines on device waits, and bad input. Each check runs in
// a forked child: the parent never initialises CUDA. The pure logic beneath
// (allocator, plan cache, bounded waits) is in test_cuda_logic.cpp.
#include <doctest/doctest.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "backend/backend.hpp"
#include "core/dtype.hpp"
#include "core/error.hpp"
#include "cuda_util.hpp"
#include "harness.hpp"
#ifdef TPPP_HAVE_CUDA
#include <cuda_runtime_api.h>

#include "cuda/cuda_check.hpp"
#endif

#ifdef TPPP_HAVE_CUDA
namespace {

using th::test_device;

using cu::Dev;
using cu::rel;
using cu::rnd;
using cu::skip_without_gpu;

double tol(int32_t dt) { return dt == TPPP_DTYPE_F32 ? 1e-5 : 1e-2; }

// Every backend op on the CUDA backend against the CPU backend.
int backend_ops(int dev) {
  cudaSetDevice(dev);
  auto cpu = tppp::create_cpu_backend();
  auto gpu = tppp::create_cuda_backend(dev);
  for (int32_t dt : {TPPP_DTYPE_F32, TPPP_DTYPE_BF16, TPPP_DTYPE_F16})
    for (int64_t m : {int64_t(1), int64_t(7), int64_t(64), int64_t(257)}) {
      const int64_t n = 96, k = 200;
      const size_t es = tppp::dtype_size(dt);
      auto x = rnd(dt, 1 + m, static_cast<size_t>(m * k)), w = rnd(dt, 2 + m, static_cast<size_t>(n * k), 0.1),
           b = rnd(dt, 3 + m, static_cast<size_t>(n));
      auto pc = cpu->pack(w.data(), dt, n, k, dt);
      auto pg = gpu->pack(w.data(), dt, n, k, dt);
      Dev dx(x), db(b);
      for (int32_t ydt : {dt, int32_t(TPPP_DTYPE_F32)})
        for (int bias = 0; bias < 2; bias++) {
          const size_t ys = tppp::dtype_size(ydt);
          std::vector<char> yc(static_cast<size_t>(m * n) * ys);
          th::poison(yc.data(), yc.size());
          cpu->linear(x.data(), *pc, bias ? b.data() : nullptr, yc.data(), m, n, dt, ydt, nullptr);
          if (bias && ydt != dt) cpu->add_bias(yc.data(), b.data(), m, n, dt, ydt, nullptr);
          Dev dy(yc.size());
          dy.poison();
          gpu->linear(dx.p, *pg, bias ? db.p : nullptr, dy.p, m, n, dt, ydt, nullptr);
          if (bias && ydt != dt) gpu->add_bias(dy.p, db.p, m, n, dt, ydt, nullptr);
          double e = rel(ydt, dy.get(), yc);
          RANK_CHECK(e <= tol(dt), "linear %s->%s M %lld bias %d: rel err %g", tppp::dtype_name(dt),
                     tppp::dtype_name(ydt), static_cast<long long>(m), bias, e);
        }
      {  // silu_mul
        auto gu = rnd(dt, 4 + m, static_cast<size_t>(m * 2 * n));
        std::vector<char> oc(static_cast<size_t>(m * n) * es);
        cpu->silu_mul(gu.data(), oc.data(), m, n, dt, nullptr);
        Dev dgu(gu), dout(oc.size());
        dout.poison();
        gpu->silu_mul(dgu.p, dout.p, m, n, dt, nullptr);
        double e = rel(dt, dout.get(), oc);
        RANK_CHECK(e <= tol(dt), "silu_mul %s M %lld: %g", tppp::dtype_name(dt), static_cast<long long>(m), e);
      }
      {  // convert to every float dtype
        for (int32_t to : {TPPP_DTYPE_F32, TPPP_DTYPE_BF16, TPPP_DTYPE_F16}) {
          std::vector<char> oc(static_cast<size_t>(m * k) * tppp::dtype_size(to));
          cpu->convert(x.data(), dt, oc.data(), to, static_cast<size_t>(m * k), nullptr);
          Dev dout(oc.size());
          dout.poison();
          gpu->convert(dx.p, dt, dout.p, to, static_cast<size_t>(m * k), nullptr);
          RANK_CHECK(dout.get() == oc, "convert %s -> %s differs from the CPU", tppp::dtype_name(dt), tppp::dtype_name(to));
        }
      }
      {  // embedding with a range mask; ids of both widths
        const int64_t rows = 13, row0 = 10, h = 24;
        auto table = rnd(dt, 5 + m, static_cast<size_t>(rows * h));
        std::vector<int64_t> ids(static_cast<size_t>(m));
        std::vector<int32_t> ids32(static_cast<size_t>(m));
        for (int64_t i = 0; i < m; i++) ids32[static_cast<size_t>(i)] = static_cast<int32_t>(ids[static_cast<size_t>(i)] = (i * 7) % 40);
        Dev dtab(table);
        for (int wide = 0; wide < 2; wide++) {
          const void* hid = wide ? static_cast<const void*>(ids.data()) : ids32.data();
          std::vector<char> idb(static_cast<const char*>(hid), static_cast<const char*>(hid) + m * (wide ? 8 : 4));
          std::vector<char> oc(static_cast<size_t>(m * h) * es);
          const int32_t idt = wide ? TPPP_DTYPE_I64 : TPPP_DTYPE_I32;
          cpu->embedding(hid, idt, m, table.data(), row0, rows, h, oc.data(), dt, nullptr);
          Dev did(idb), dout(oc.size());
          dout.poison();
          gpu->embedding(did.p, idt, m, dtab.p, row0, rows, h, dout.p, dt, nullptr);
          RANK_CHECK(dout.get() == oc, "embedding %s ids %s differs from the CPU", tppp::dtype_name(dt),
                     tppp::dtype_name(idt));
        }
      }
      {  // argmax rows (with an offset and a partial last shard), then merge 3 parts
        const int64_t cols = 300, valid = 290;
        auto lg = rnd(dt, 6 + m, static_cast<size_t>(m * cols));
        std::vector<tppp::ArgmaxCand> cc(static_cast<size_t>(m) * 3);
        for (int part = 0; part < 3; part++)
          cpu->argmax_rows(lg.data(), m, cols, part == 2 ? valid : cols, part * cols, dt, cc.data() + part * m, nullptr);
        Dev dl(lg), dc(cc.size() * sizeof(tppp::ArgmaxCand));
        dc.poison();
        for (int part = 0; part < 3; part++)
          gpu->argmax_rows(dl.p, m, cols, part == 2 ? valid : cols, part * cols, dt,
                           static_cast<tppp::ArgmaxCand*>(dc.p) + part * m, nullptr);
        std::vector<char> got = dc.get();
        RANK_CHECK(std::memcmp(got.data(), cc.data(), got.size()) == 0, "argmax_rows %s M %lld differs from the CPU",
                   tppp::dtype_name(dt), static_cast<long long>(m));
        std::vector<int64_t> ic(static_cast<size_t>(m));
        cpu->argmax_merge(cc.data(), 3, m, ic.data(), nullptr);
        Dev di(ic.size() * 8);
        di.poison();
        gpu->argmax_merge(static_cast<tppp::ArgmaxCand*>(dc.p), 3, m, static_cast<int64_t*>(di.p), nullptr);
        std::vector<char> gi = di.get();
        RANK_CHECK(std::memcmp(gi.data(), ic.data(), gi.size()) == 0, "argmax_merge differs from the CPU");
      }
    }
  RANK_CHECK(cudaDeviceSynchronize() == cudaSuccess, "device error: %s", cudaGetErrorString(cudaGetLastError()));
  return 0;
}

// This rank's place in a tp x pp group on GPU dev over `transport`.
tppp_status gpu_group(const tppp_unique_id& id, int rank, int tp, int pp, int dev, int32_t transport, int timeout_ms,
                      tppp_group_t* g) {
  tppp_group_params gp = th::params(tp, pp, timeout_ms);
  gp.device = dev;
  gp.transport = transport;
  return tppp_group_create(&id, tp * pp, rank, &gp, g);
}

tppp_layer_t layer(tppp_group_t g, int kind, int32_t dt, int64_t in, int64_t out) {
  tppp_layer_params p;
  tppp_layer_params_init(&p, sizeof p);
  p.kind = kind;
  p.dtype = dt;
  p.in_features = in;
  p.out_features = out;
  tppp_layer_t l = nullptr;
  return tppp_layer_create(g, &p, &l) == TPPP_OK ? l : nullptr;
}

tppp_tensor dev_tensor(void* p, int32_t dt, std::initializer_list<int64_t> shape, int dev) {
  tppp_tensor t = th::tensor(p, dt, shape);
  t.mem_kind = TPPP_MEM_CUDA;
  t.device = dev;
  return t;
}

// A warm forward captured into a CUDA graph and replayed gives the eager result.
int graph_capture(int rank, const tppp_unique_id& id, int dev, int32_t transport) {
  tppp_group_t g = nullptr;
  RANK_OK(gpu_group(id, rank, 1, 1, dev, transport, 60000, &g));
  tppp_group_info info;
  info.struct_size = sizeof info;
  RANK_OK(tppp_group_get_info(g, &info));
  if (transport == TPPP_TRANSPORT_NCCL) RANK_CHECK(info.transport == TPPP_TRANSPORT_NCCL, "transport %d", info.transport);
  const int32_t dt = TPPP_DTYPE_BF16;
  const int64_t H = 256, I = 512, M = 16;
  tppp_layer_t l = layer(g, TPPP_LAYER_MLP, dt, H, I);
  RANK_CHECK(l, "layer_create: %s", tppp_last_error());
  auto gu = rnd(dt, 11, static_cast<size_t>(2 * I * H), 0.05), dw = rnd(dt, 12, static_cast<size_t>(H * I), 0.05);
  tppp_tensor gut = th::tensor(gu.data(), dt, {2 * I, H}), dwt = th::tensor(dw.data(), dt, {H, I});
  RANK_OK(tppp_layer_bind(l, 0, &gut, nullptr));
  RANK_OK(tppp_layer_bind(l, 1, &dwt, nullptr));
  auto x = rnd(dt, 13, static_cast<size_t>(M * H));
  Dev dx(x), y1(static_cast<size_t>(M * H) * 2), y2(y1.n);
  tppp_tensor xt = dev_tensor(dx.p, dt, {M, H}, dev), y1t = dev_tensor(y1.p, dt, {M, H}, dev),
              y2t = dev_tensor(y2.p, dt, {M, H}, dev);
  cudaStream_t s;
  RANK_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking) == cudaSuccess, "stream");
  y1.poison();
  RANK_OK(tppp_layer_forward(l, &xt, &y1t, s));  // eager (and warm: scratch sized, plans made)
  RANK_CHECK(cudaStreamSynchronize(s) == cudaSuccess, "eager");
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  RANK_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal) == cudaSuccess, "begin capture");
  tppp_status st = tppp_layer_forward(l, &xt, &y2t, s);
  RANK_CHECK(cudaStreamEndCapture(s, &graph) == cudaSuccess, "end capture");
  RANK_CHECK(st == TPPP_OK, "forward while capturing: %s", tppp_last_error());
  RANK_CHECK(cudaGraphInstantiate(&exec, graph, 0) == cudaSuccess, "instantiate");
  for (int rep = 0; rep < 2; rep++) {
    y2.poison();
    RANK_CHECK(cudaGraphLaunch(exec, s) == cudaSuccess && cudaStreamSynchronize(s) == cudaSuccess, "replay");
    RANK_CHECK(y2.get() == y1.get(), "graph replay %d differs from the eager forward", rep);
  }
  // A larger M inside a capture must allocate: refused with a message, not a crash.
  Dev bx(static_cast<size_t>(4 * M * H) * 2), by(bx.n);
  tppp_tensor bxt = dev_tensor(bx.p, dt, {4 * M, H}, dev), byt = dev_tensor(by.p, dt, {4 * M, H}, dev);
  RANK_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal) == cudaSuccess, "begin capture");
  st = tppp_layer_forward(l, &bxt, &byt, s);
  cudaGraph_t g2;
  cudaStreamEndCapture(s, &g2);
  if (g2) cudaGraphDestroy(g2);
  cudaGetLastError();
  RANK_CHECK(st == TPPP_ERR_INVALID_USAGE && std::string(tppp_last_error()).find("captur") != std::string::npos,
             "growing during capture: %s %s", tppp_status_string(st), tppp_last_error());
  // Host memory on a CUDA group: named.
  tppp_tensor hx = th::tensor(x.data(), dt, {M, H});
  st = tppp_layer_forward(l, &hx, &y1t, s);
  RANK_CHECK(st == TPPP_ERR_INVALID_ARGUMENT && std::string(tppp_last_error()).find("memory kind") != std::string::npos,
             "host x on a CUDA group: %s", tppp_last_error());
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(s);
  tppp_layer_destroy(l);
  tppp_group_destroy(g);
  return 0;
}

// NCCL collectives at world size 1 on device buffers, through the C API.
int nccl_world1(int rank, const tppp_unique_id& id, int dev) {
  tppp_group_t g = nullptr;
  RANK_OK(gpu_group(id, rank, 1, 1, dev, TPPP_TRANSPORT_NCCL, 30000, &g));
  auto x = rnd(TPPP_DTYPE_F32, 21, 1000);
  Dev dx(x), dy(x.size());
  dy.poison();
  RANK_OK(tppp_all_reduce(g, TPPP_SCOPE_TP, dx.p, dy.p, 1000, TPPP_DTYPE_F32, TPPP_OP_SUM, nullptr));
  RANK_CHECK(dy.get() == x, "all_reduce over one rank must copy");
  dy.poison();
  RANK_OK(tppp_all_gather(g, TPPP_SCOPE_WORLD, dx.p, dy.p, 1000, TPPP_DTYPE_F32, nullptr));
  RANK_CHECK(dy.get() == x, "all_gather over one rank must copy");
  RANK_OK(tppp_broadcast(g, TPPP_SCOPE_PP, dx.p, 1000, TPPP_DTYPE_F32, 0, nullptr));
  RANK_CHECK(dx.get() == x, "broadcast changed the root's data");
  RANK_OK(tppp_barrier(g, TPPP_SCOPE_WORLD));
  tppp_group_destroy(g);
  return 0;
}

// NCCL work still in flight when the host starts a global-mode capture (what
// torch.cuda.graph does) on another stream: the transport's watchdog keeps
// polling that work, and its queries must not invalidate the capture.
int nccl_watchdog_vs_global_capture(int rank, const tppp_unique_id& id, int dev) {
  tppp_group_t g = nullptr;
  RANK_OK(gpu_group(id, rank, 1, 1, dev, TPPP_TRANSPORT_NCCL, 30000, &g));
  cudaStream_t work, cap;
  RANK_CHECK(cudaStreamCreateWithFlags(&work, cudaStreamNonBlocking) == cudaSuccess, "stream");
  RANK_CHECK(cudaStreamCreateWithFlags(&cap, cudaStreamNonBlocking) == cudaSuccess, "stream");
  auto sleeper = [](void*) { std::this_thread::sleep_for(std::chrono::milliseconds(300)); };
  Dev buf(4096), tmp(4096);
  RANK_CHECK(cudaLaunchHostFunc(work, sleeper, nullptr) == cudaSuccess, "cudaLaunchHostFunc");
  RANK_OK(tppp_all_reduce(g, TPPP_SCOPE_WORLD, buf.p, buf.p, 1024, TPPP_DTYPE_F32, TPPP_OP_SUM, work));  // watched, pending
  cudaGraph_t graph = nullptr;
  RANK_CHECK(cudaStreamBeginCapture(cap, cudaStreamCaptureModeGlobal) == cudaSuccess, "begin capture");
  cudaMemsetAsync(tmp.p, 0, tmp.n, cap);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // the watchdog polls meanwhile
  cudaMemsetAsync(tmp.p, 1, tmp.n, cap);
  const cudaError_t e = cudaStreamEndCapture(cap, &graph);
  RANK_CHECK(e == cudaSuccess && graph, "capture ended with %s (invalidated by another thread?)", cudaGetErrorName(e));
  cudaGraphDestroy(graph);
  RANK_CHECK(cudaStreamSynchronize(work) == cudaSuccess, "work stream");
  tppp_status as = TPPP_OK;
  RANK_OK(tppp_group_get_async_error(g, &as));
  RANK_CHECK(as == TPPP_OK, "async error after the capture: %s", tppp_status_string(as));
  cudaStreamDestroy(cap);
  cudaStreamDestroy(work);
  tppp_group_destroy(g);
  return 0;
}

// Ranks sharing the GPU: device buffers over UCX (staged) in TP collectives
// and PP point-to-point.
int shared_gpu(int rank, const tppp_unique_id& id, int dev, int tp, int pp) {
  tppp_group_t g = nullptr;
  RANK_OK(gpu_group(id, rank, tp, pp, dev, TPPP_TRANSPORT_AUTO, 60000, &g));
  const size_t n = 5000;
  auto mine = rnd(TPPP_DTYPE_F32, 100 + static_cast<uint64_t>(rank), n);
  Dev dx(mine), dy(mine.size());
  dy.poison();
  RANK_OK(tppp_all_reduce(g, TPPP_SCOPE_WORLD, dx.p, dy.p, n, TPPP_DTYPE_F32, TPPP_OP_SUM, nullptr));
  std::vector<double> want(n, 0.0);
  for (int r = 0; r < tp * pp; r++) {
    auto v = rnd(TPPP_DTYPE_F32, 100 + static_cast<uint64_t>(r), n);
    for (size_t i = 0; i < n; i++) want[i] += th::load(TPPP_DTYPE_F32, v.data(), i);
  }
  auto got = dy.get();
  double e = th::rel_err(TPPP_DTYPE_F32, got.data(), want);
  RANK_CHECK(e < 1e-6, "all_reduce of device buffers: rel err %g", e);
  if (pp > 1) {  // stage s sends its buffer to stage s+1 (same tp rank)
    int32_t pr = 0, ps = 0;
    RANK_OK(tppp_group_scope(g, TPPP_SCOPE_PP, &pr, &ps));
    Dev in(mine.size());
    in.poison();
    tppp_request_t rs = nullptr, rr = nullptr;
    if (pr + 1 < ps) RANK_OK(tppp_isend(g, TPPP_SCOPE_PP, pr + 1, 7, dx.p, mine.size(), nullptr, &rs));
    if (pr > 0) RANK_OK(tppp_irecv(g, TPPP_SCOPE_PP, pr - 1, 7, in.p, mine.size(), nullptr, &rr));
    if (rs) RANK_OK(tppp_request_wait(rs));
    if (rr) {
      RANK_OK(tppp_request_wait(rr));
      int32_t from = 0;
      RANK_OK(tppp_group_global_rank(g, TPPP_SCOPE_PP, pr - 1, &from));
      RANK_CHECK(in.get() == rnd(TPPP_DTYPE_F32, 100 + static_cast<uint64_t>(from), n), "p2p of device buffers");
    }
    tppp_request_free(rs);
    tppp_request_free(rr);
  }
  tppp_group_destroy(g);
  return 0;
}

// A stream held up by a slow host callback: the bounded waits give TIMEOUT
// naming what they waited for, then succeed once it has passed.
int stream_wait_deadline(int dev) {
  cudaSetDevice(dev);
  cudaStream_t s;
  RANK_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking) == cudaSuccess, "stream");
  cudaEvent_t ev;
  RANK_CHECK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming) == cudaSuccess, "event");
  auto sleeper = [](void*) { std::this_thread::sleep_for(std::chrono::milliseconds(1500)); };
  RANK_CHECK(cudaLaunchHostFunc(s, sleeper, nullptr) == cudaSuccess, "cudaLaunchHostFunc");
  RANK_CHECK(cudaEventRecord(ev, s) == cudaSuccess, "record");
  for (int ev_wait = 0; ev_wait < 2; ev_wait++) {
    try {
      if (ev_wait)
        tppp::wait_event(ev, 100, "test: the event");
      else
        tppp::wait_stream(s, 100, "test: the stream");
      RANK_CHECK(false, "a held-up %s was not reported", ev_wait ? "event" : "stream");
    } catch (const tppp::Error& e) {
      RANK_CHECK(e.status() == TPPP_ERR_TIMEOUT && std::strstr(e.what(), ev_wait ? "test: the event" : "test: the stream"),
                 "%s: %s", tppp_status_string(e.status()), e.what());
    }
  }
  tppp::wait_stream(s, 10000, "test: the stream, again");
  tppp::wait_event(ev, 10000, "test: the event, again");
  // The backend's sync uses the same bound (its timeout_ms).
  auto gpu = tppp::create_cuda_backend(dev, 100);
  RANK_CHECK(cudaLaunchHostFunc(s, sleeper, nullptr) == cudaSuccess, "cudaLaunchHostFunc");
  try {
    gpu->sync(s);
    RANK_CHECK(false, "backend sync of a held-up stream returned");
  } catch (const tppp::Error& e) {
    RANK_CHECK(e.status() == TPPP_ERR_TIMEOUT, "backend sync: %s", e.what());
  }
  RANK_CHECK(cudaStreamSynchronize(s) == cudaSuccess, "sync");
  cudaEventDestroy(ev);
  cudaStreamDestroy(s);
  return 0;
}

// NCCL refuses two ranks on one GPU: asked for anyway, every rank says why.
int nccl_shared_refused(int rank, const tppp_unique_id& id, int dev) {
  tppp_group_t g = nullptr;
  tppp_status s = gpu_group(id, rank, 2, 1, dev, TPPP_TRANSPORT_NCCL, 20000, &g);
  RANK_CHECK(s == TPPP_ERR_NOT_SUPPORTED && std::string(tppp_last_error()).find("one GPU") != std::string::npos,
             "%s: %s", tppp_status_string(s), tppp_last_error());
  return 0;
}

}  // namespace

TEST_SUITE("cuda") {
  TEST_CASE("CUDA backend ops match the CPU backend") {
    if (skip_without_gpu()) return;
    auto codes = th::run_ranks(1, 300, [](int, const tppp_unique_id&) { return backend_ops(test_device()); });
    CHECK_MESSAGE(th::all_zero(codes), th::codes_str(codes));
  }
  TEST_CASE("layer forwards capture into a CUDA graph (UCX and NCCL groups)") {
    if (skip_without_gpu()) return;
    for (int32_t tr : {TPPP_TRANSPORT_UCX, TPPP_TRANSPORT_NCCL}) {
      CAPTURE(tr);
      auto codes = th::run_ranks(1, 120, [tr](int r, const tppp_unique_id& id) { return graph_capture(r, id, test_device(), tr); });
      CHECK_MESSAGE(th::all_zero(codes), th::codes_str(codes));
    }
  }
  TEST_CASE("waits for the device have deadlines") {
    if (skip_without_gpu()) return;
    auto codes = th::run_ranks(1, 60, [](int, const tppp_unique_id&) { return stream_wait_deadline(test_device()); });
    CHECK_MESSAGE(th::all_zero(codes), th::codes_str(codes));
  }
  TEST_CASE("NCCL at world size 1") {
    if (skip_without_gpu()) return;
    auto codes = th::run_ranks(1, 120, [](int r, const tppp_unique_id& id) { return nccl_world1(r, id, test_device()); });
    CHECK_MESSAGE(th::all_zero(codes), th::codes_str(codes));
  }
  TEST_CASE("NCCL watchdog does not break a global-mode capture on another thread") {
    if (skip_without_gpu()) return;
    auto codes = th::run_ranks(1, 120, [](int r, const tppp_unique_id& id) {
      return nccl_watchdog_vs_global_capture(r, id, test_device());
    });
    CHECK_MESSAGE(th::all_zero(codes), th::codes_str(codes));
  }
  TEST_CASE("ranks sharing one GPU exchange device buffers over UCX") {
    if (skip_without_gpu()) return;
    for (auto grid : {std::pair<int, int>{2, 1}, {1, 2}, {2, 2}}) {
      CAPTURE(grid.first);
      CAPTURE(grid.second);
      auto codes = th::run_ranks(grid.first * grid.second, 180, [grid](int r, const tppp_unique_id& id) {
        return shared_gpu(r, id, test_device(), grid.first, grid.second);
      });
      CHECK_MESSAGE(th::all_zero(codes), th::codes_str(codes));
    }
    auto codes = th::run_ranks(2, 60, [](int r, const tppp_unique_id& id) { return nccl_shared_refused(r, id, test_device()); });
    CHECK_MESSAGE(th::all_zero(codes), th::codes_str(codes));
  }
}
#endif
