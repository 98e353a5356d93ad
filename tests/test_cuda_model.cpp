// The model runtime on a GPU (suite "cuda"; runs where TPPP_TEST_DEVICE names
// a GPU, skips elsewhere; each check in a forked child): every decoder op of
// the CUDA backend against the CPU backend (the oracle), FlashInfer's paged
// decode and prefill (through CudaAttention, which must pick them) against
// the CPU attention on mixed batches with cached prefixes and GQA groups
// 1, 4 and 7 (and in CUDA-graph mode on a padded decode batch, replayed
// after a new plan), and whole models on the GPU against transformers (logits of
// every prompt position; greedy tokens: all of them in f32, the first ones
// in bf16) on TP x PP grids whose ranks share the GPU over UCX.
#include <doctest/doctest.h>

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "backend/backend.hpp"
#include "core/dtype.hpp"
#include "cuda_util.hpp"
#include "harness.hpp"
#include "model/kv_cache.hpp"
#include "model_util.hpp"
#ifdef TPPP_HAVE_CUDA
#include <cuda_runtime_api.h>

#include "backend/cuda/cuda_attention.hpp"
#endif

#ifdef TPPP_HAVE_CUDA
namespace {

using th::test_device;

using Buf = cu::Dev;
using cu::rel;
using cu::rnd;
bool no_gpu() { return cu::skip_without_gpu(); }

double tol(int32_t dt) { return dt == TPPP_DTYPE_F32 ? 1e-5 : 2e-2; }

// A batch over a paged cache: sequence 0 has `prefix` cached tokens and adds
// `more`; sequence 1 starts with `more`; sequences 2.. decode one token after
// `prefix` cached ones (decode_only: only sequences >= 2, one token each).
struct AttnCase {
  tppp::KvPlan plan;
  int32_t n = 0;
};
AttnCase make_batch(int32_t page_size, int32_t prefix, int32_t more, int32_t decoders, bool decode_only) {
  tppp::KvBook k(4096, page_size, 2 + decoders);
  std::vector<int32_t> tok, pos, seq;
  for (int32_t s = 0; s < 2 + decoders; s++)
    for (int32_t p = 0; p < prefix; p++)
      if (s != 1) tok.push_back(1), pos.push_back(p), seq.push_back(s);
  k.commit(k.plan(tppp::BatchView{static_cast<int32_t>(tok.size()), tok.data(), pos.data(), seq.data(), nullptr}, 2));
  tok.clear(), pos.clear(), seq.clear();
  if (!decode_only)
    for (int32_t p = 0; p < more; p++) {
      tok.push_back(1), pos.push_back(prefix + p), seq.push_back(0);
      tok.push_back(1), pos.push_back(p), seq.push_back(1);  // interleaved: runs of one token for seq 1
    }
  for (int32_t s = 2; s < 2 + decoders; s++) tok.push_back(1), pos.push_back(prefix), seq.push_back(s);
  AttnCase c;
  c.n = static_cast<int32_t>(tok.size());
  c.plan = k.plan(tppp::BatchView{c.n, tok.data(), pos.data(), seq.data(), nullptr}, 2);
  return c;
}

int decoder_ops(int dev) {
  cudaSetDevice(dev);
  auto cpu = tppp::create_cpu_backend();
  auto gpu = tppp::create_cuda_backend(dev);
  for (int32_t dt : {TPPP_DTYPE_F32, TPPP_DTYPE_BF16, TPPP_DTYPE_F16}) {
    const size_t es = tppp::dtype_size(dt);
    for (int64_t h : {int64_t(96), int64_t(3584)}) {  // rms_norm, without and with the residual
      const int64_t m = 5;
      auto x = rnd(dt, 1, static_cast<size_t>(m * h)), r = rnd(dt, 2, static_cast<size_t>(m * h)),
           w = rnd(dt, 3, static_cast<size_t>(h));
      for (int res = 0; res < 2; res++) {
        std::vector<char> rc = r, oc(static_cast<size_t>(m * h) * es);
        cpu->rms_norm(x.data(), res ? rc.data() : nullptr, w.data(), oc.data(), m, h, 1e-6f, dt, nullptr);
        Buf dx(x), dr(r), dw(w), dout(oc.size());
        dout.poison();
        gpu->rms_norm(dx.p, res ? dr.p : nullptr, dw.p, dout.p, m, h, 1e-6f, dt, nullptr);
        const double e = rel(dt, dout.get(), oc), er = res ? rel(dt, dr.get(), rc) : 0;
        RANK_CHECK(e <= tol(dt) && er <= tol(dt), "rms_norm %s h %lld residual %d: rel err %g (residual %g)",
                   tppp::dtype_name(dt), static_cast<long long>(h), res, e, er);
      }
    }
    const int64_t m = 6, n = 3, d = 32, ld = n * d + 16;
    {  // head_rms_norm and rope, in place at a row stride
      auto x = rnd(dt, 4, static_cast<size_t>(m * ld)), w = rnd(dt, 5, static_cast<size_t>(d));
      std::vector<int32_t> pos = {0, 1, 7, 100, 4095, 3};
      std::vector<float> inv(static_cast<size_t>(d / 2));
      for (size_t i = 0; i < inv.size(); i++) inv[i] = static_cast<float>(std::pow(10000.0, -2.0 * i / d));
      std::vector<char> xc = x;
      cpu->head_rms_norm(xc.data(), m, n, d, ld, w.data(), 1e-6f, dt, nullptr);
      cpu->rope(xc.data(), m, n, d, ld, pos.data(), inv.data(), dt, nullptr);
      Buf dx(x), dw(w), dp(pos), di(inv);
      gpu->head_rms_norm(dx.p, m, n, d, ld, dw.p, 1e-6f, dt, nullptr);
      gpu->rope(dx.p, m, n, d, ld, static_cast<const int32_t*>(dp.p), static_cast<const float*>(di.p), dt, nullptr);
      const double e = rel(dt, dx.get(), xc);
      RANK_CHECK(e <= tol(dt), "head_rms_norm + rope %s: rel err %g", tppp::dtype_name(dt), e);
    }
    {  // kv_write then the generic attention (head_dim 32) over a mixed batch
      const int64_t nh = 4, kvh = 2, ps = 4;
      AttnCase c = make_batch(static_cast<int32_t>(ps), 5, 6, 3, false);
      const int64_t T = c.n, qld = (nh + 2 * kvh) * d, pages = 4096;
      auto qkv = rnd(dt, 6, static_cast<size_t>(T * qld)), cache = rnd(dt, 7, static_cast<size_t>(pages * ps * kvh * d));
      std::vector<char> kc = cache, vc = cache, oc(static_cast<size_t>(T * nh * d) * es);
      const char* k = qkv.data() + static_cast<size_t>(nh * d) * es;
      cpu->kv_write(k, k + static_cast<size_t>(kvh * d) * es, qld, T, kvh, d, c.plan.slot.data(), kc.data(), vc.data(),
                    dt, nullptr);
      cpu->attention(qkv.data(), qld, T, nh, kvh, d, kc.data(), vc.data(), ps, c.plan.kv_len.data(),
                     c.plan.page_off.data(), c.plan.pages.data(), 0.17f, oc.data(), dt, nullptr);
      Buf dq(qkv), dk(cache), dv(cache), dslot(c.plan.slot), dlen(c.plan.kv_len), doff(c.plan.page_off),
          dpg(c.plan.pages), dout(oc.size());
      dout.poison();
      const char* gk = static_cast<const char*>(dq.p) + static_cast<size_t>(nh * d) * es;
      gpu->kv_write(gk, gk + static_cast<size_t>(kvh * d) * es, qld, T, kvh, d, static_cast<const int32_t*>(dslot.p),
                    dk.p, dv.p, dt, nullptr);
      RANK_CHECK(dk.get() == kc && dv.get() == vc, "kv_write %s differs from the CPU", tppp::dtype_name(dt));
      gpu->attention(dq.p, qld, T, nh, kvh, d, dk.p, dv.p, ps, static_cast<const int32_t*>(dlen.p),
                     static_cast<const int32_t*>(doff.p), static_cast<const int32_t*>(dpg.p), 0.17f, dout.p, dt,
                     nullptr);
      const double e = rel(dt, dout.get(), oc);
      RANK_CHECK(e <= tol(dt), "generic attention %s: rel err %g", tppp::dtype_name(dt), e);
    }
  }
  RANK_CHECK(cudaDeviceSynchronize() == cudaSuccess, "device error: %s", cudaGetErrorString(cudaGetLastError()));
  return 0;
}

// FlashInfer through CudaAttention against the CPU attention.
int flashinfer_attention(int dev) {
  cudaSetDevice(dev);
  auto cpu = tppp::create_cpu_backend();
  tppp::CudaAttention fa(60000);
  struct Heads {
    int64_t nh, kvh;
  };
  for (int32_t dt : {TPPP_DTYPE_BF16, TPPP_DTYPE_F16})
    for (int64_t d : {int64_t(64), int64_t(128)})
      for (Heads hd : {Heads{4, 4}, Heads{8, 2}, Heads{7, 1}})
        for (int decode = 0; decode < 2; decode++) {
          const int64_t ps = 16, pages = 512;
          AttnCase c = make_batch(static_cast<int32_t>(ps), decode ? 700 : 37, 50, 5, decode != 0);
          const int64_t T = c.n, qld = hd.nh * d + 8;  // q rows at a stride, as in the fused QKV output
          const size_t es = tppp::dtype_size(dt);
          auto q = rnd(dt, 11 + d, static_cast<size_t>(T * qld)),
               kc = rnd(dt, 12, static_cast<size_t>(pages * ps * hd.kvh * d)),
               vc = rnd(dt, 13, static_cast<size_t>(pages * ps * hd.kvh * d));
          std::vector<char> oc(static_cast<size_t>(T * hd.nh * d) * es);
          const float scale = 1.0f / std::sqrt(static_cast<float>(d));
          cpu->attention(q.data(), qld, T, hd.nh, hd.kvh, d, kc.data(), vc.data(), ps, c.plan.kv_len.data(),
                         c.plan.page_off.data(), c.plan.pages.data(), scale, oc.data(), dt, nullptr);
          const tppp::AttnRuns runs = tppp::attn_runs(c.plan, c.n, static_cast<int32_t>(ps));
          Buf dq(q), dk(kc), dv(vc), dlen(c.plan.kv_len), doff(c.plan.page_off), dpg(c.plan.pages), dout(oc.size());
          dout.poison();
          fa.plan(runs, T, hd.nh, hd.kvh, d, ps, dt, nullptr);
          RANK_CHECK(fa.planned(), "FlashInfer was not planned for %s head_dim %lld group %lld",
                     tppp::dtype_name(dt), static_cast<long long>(d), static_cast<long long>(hd.nh / hd.kvh));
          fa.attention(dq.p, qld, T, hd.nh, hd.kvh, d, dk.p, dv.p, ps, static_cast<const int32_t*>(dlen.p),
                       static_cast<const int32_t*>(doff.p), static_cast<const int32_t*>(dpg.p), scale, dout.p, dt,
                       nullptr);
          const double e = rel(dt, dout.get(), oc);
          RANK_CHECK(e <= tol(dt), "FlashInfer %s %s head_dim %lld heads %lld/%lld: rel err %g",
                     decode ? "decode" : "prefill", tppp::dtype_name(dt), static_cast<long long>(d),
                     static_cast<long long>(hd.nh), static_cast<long long>(hd.kvh), e);
        }
  RANK_CHECK(cudaDeviceSynchronize() == cudaSuccess, "device error: %s", cudaGetErrorString(cudaGetLastError()));
  return 0;
}

// The graph path's attention: FlashInfer planned in its CUDA-graph mode on
// a decode batch padded to its bucket (as StageDecoder pads it: a run of one
// token on the scratch page per padding row), captured once, then replayed
// after a plan of another batch of the same bucket (longer sequences, new
// q and caches in the same buffers): both replays against the CPU attention
// on the real rows. bf16, head_dim 128, GQA groups 7 (Qwen2-7B: 28/4, the
// prefill kernel) and 4 (the decode kernel). The run arrays are reserved
// once, so the signature a graph compares stays the same across the plans.
int flashinfer_graph_padded(int dev) {
  cudaSetDevice(dev);
  auto cpu = tppp::create_cpu_backend();
  const int32_t dt = TPPP_DTYPE_BF16, bucket = 8, real = 5;
  const int64_t d = 128, ps = 16, pages = 512, scratch = pages - 1;
  const size_t es = tppp::dtype_size(dt);
  struct Heads {
    int64_t nh, kvh;
  };
  for (Heads hd : {Heads{7, 1}, Heads{28, 4}, Heads{8, 2}}) {
    tppp::CudaAttention fa(60000);
    fa.reserve(64, pages + 64);
    cudaStream_t s;
    RANK_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking) == cudaSuccess, "cudaStreamCreate");
    const int64_t qld = (hd.nh + 2 * hd.kvh) * d;
    Buf dq(static_cast<size_t>(bucket * qld) * es), dk(static_cast<size_t>(pages * ps * hd.kvh * d) * es),
        dv(dk.n), dout(static_cast<size_t>(bucket * hd.nh * d) * es);
    cudaGraphExec_t exec = nullptr;
    uint64_t sig0 = 0;
    int step = 0;
    for (int32_t prefix : {300, 451}) {
      AttnCase c = make_batch(static_cast<int32_t>(ps), prefix, 1, real, true);
      RANK_CHECK(c.n == real, "batch of %d rows", c.n);
      const tppp::KvPlan padded = tppp::pad_rows(c.plan, bucket, static_cast<int32_t>(scratch), static_cast<int32_t>(ps));
      const tppp::AttnRuns runs = tppp::attn_runs(padded, bucket, static_cast<int32_t>(ps));
      auto q = rnd(dt, 21 + static_cast<uint64_t>(prefix), static_cast<size_t>(bucket * qld)),
           kc = rnd(dt, 22 + static_cast<uint64_t>(prefix), static_cast<size_t>(pages * ps * hd.kvh * d)),
           vc = rnd(dt, 23 + static_cast<uint64_t>(prefix), static_cast<size_t>(pages * ps * hd.kvh * d));
      std::vector<char> oc(static_cast<size_t>(real * hd.nh * d) * es);
      const float scale = 1.0f / std::sqrt(static_cast<float>(d));
      cpu->attention(q.data(), qld, real, hd.nh, hd.kvh, d, kc.data(), vc.data(), ps, c.plan.kv_len.data(),
                     c.plan.page_off.data(), c.plan.pages.data(), scale, oc.data(), dt, nullptr);
      cudaMemcpy(dq.p, q.data(), q.size(), cudaMemcpyHostToDevice);
      cudaMemcpy(dk.p, kc.data(), kc.size(), cudaMemcpyHostToDevice);
      cudaMemcpy(dv.p, vc.data(), vc.size(), cudaMemcpyHostToDevice);
      dout.poison();
      RANK_CHECK(cudaDeviceSynchronize() == cudaSuccess, "upload");
      fa.plan(runs, bucket, hd.nh, hd.kvh, d, ps, dt, s, true);
      RANK_CHECK(fa.planned(), "FlashInfer (graph mode) was not planned for group %lld", static_cast<long long>(hd.nh / hd.kvh));
      if (step == 0) {
        sig0 = fa.signature();
        cudaGraph_t g = nullptr;
        RANK_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal) == cudaSuccess, "begin capture");
        fa.attention(dq.p, qld, bucket, hd.nh, hd.kvh, d, dk.p, dv.p, ps, nullptr, nullptr, nullptr, scale, dout.p, dt, s);
        RANK_CHECK(cudaStreamEndCapture(s, &g) == cudaSuccess, "end capture: %s", cudaGetErrorString(cudaGetLastError()));
        RANK_CHECK(cudaGraphInstantiate(&exec, g, 0) == cudaSuccess, "instantiate");
        cudaGraphDestroy(g);
      } else {
        RANK_CHECK(fa.signature() == sig0, "group %lld: the graph-mode plan of a same-bucket batch changed the "
                   "signature (the decoder would capture again)", static_cast<long long>(hd.nh / hd.kvh));
      }
      RANK_CHECK(cudaGraphLaunch(exec, s) == cudaSuccess, "replay");
      RANK_CHECK(cudaStreamSynchronize(s) == cudaSuccess, "replay: %s", cudaGetErrorString(cudaGetLastError()));
      std::vector<char> got = dout.get();
      got.resize(oc.size());  // the real rows; padding rows are scratch
      const double e = rel(dt, got, oc);
      RANK_CHECK(e <= tol(dt), "graph replay %d, heads %lld/%lld, prefix %d: rel err %g", step,
                 static_cast<long long>(hd.nh), static_cast<long long>(hd.kvh), prefix, e);
      step++;
    }
    cudaGraphExecDestroy(exec);
    cudaStreamDestroy(s);
  }
  RANK_CHECK(cudaDeviceSynchronize() == cudaSuccess, "device error: %s", cudaGetErrorString(cudaGetLastError()));
  return 0;
}

// Steps in flight on the GPU (every-rank mode): prompt 0's prefill, then
// decode steps fed transformers' tokens, each sampled id against the next;
// a seeded draw repeats after seq_rm takes the sequence back to its prompt.
int steps_on_gpu(tppp_model_t m, int rank, const mt::Ref& ref, const std::string& name) {
  const std::vector<int32_t>& q = ref.prompts[0];
  const int32_t n = static_cast<int32_t>(q.size()), check = ref.bf16 ? 2 : 6;
  tppp_step_result r;
  r.struct_size = sizeof r;
  for (int32_t t = -1; t < check - 1; t++) {
    mt::Batch b;
    if (t < 0) {
      for (int32_t k = 0; k < n; k++) b.add(q[static_cast<size_t>(k)], k, 7);
      for (auto& w : b.want) w = 0;
      b.want.back() = 1;
    } else {
      b.add(ref.tokens[0][static_cast<size_t>(t)], n + t, 7);
    }
    tppp_batch v = b.view();
    RANK_OK(tppp_model_submit(m, &v, nullptr, nullptr));
    RANK_OK(tppp_model_wait(m, &r));
    if (rank == 0)
      RANK_CHECK(r.n_out == 1 && r.token[0] == ref.tokens[0][static_cast<size_t>(t + 1)],
                 "%s step %d: %d, transformers %d", name.c_str(), t + 1, r.n_out ? r.token[0] : -1,
                 ref.tokens[0][static_cast<size_t>(t + 1)]);
  }
  tppp_sampling_params sp;
  tppp_sampling_params_init(&sp, sizeof sp);
  sp.temperature = 0.8f;
  sp.top_k = 20;
  sp.seed = 11;
  sp.logprobs = 1;
  const tppp_sampling_params* spp[1] = {&sp};
  tppp_step_params stp;
  tppp_step_params_init(&stp, sizeof stp);
  stp.sampling = spp;
  int32_t draws[2] = {-1, -2};
  for (int k = 0; k < 2; k++) {
    RANK_OK(tppp_model_seq_rm(m, 7, n, -1));
    mt::Batch b;
    b.add(ref.tokens[0][0], n, 7);
    tppp_batch v = b.view();
    RANK_OK(tppp_model_submit(m, &v, &stp, nullptr));
    RANK_OK(tppp_model_wait(m, &r));
    if (rank == 0) {
      RANK_CHECK(r.n_out == 1 && r.logprob[0] <= 0.f, "%s: sampled step", name.c_str());
      draws[k] = r.token[0];
    }
  }
  if (rank == 0) RANK_CHECK(draws[0] == draws[1], "%s: a seeded draw differs: %d, %d", name.c_str(), draws[0], draws[1]);
  RANK_OK(tppp_model_remove_seq(m, 7));
  return 0;
}

// A whole model on the GPU: every prompt position's logits, then greedy
// generation against transformers' tokens (bf16: the first 4).
int model_on_gpu(int rank, const tppp_unique_id& id, int dev, int tp, int pp, const std::string& name) {
  const mt::Ref ref = mt::load_ref(name);
  mt::Open o;
  if (mt::open_model(id, rank, tp, pp, name, &o, 4096, 16, 60000, false, dev)) return 1;
  for (size_t p = 0; p < ref.prompts.size(); p++) {
    mt::Batch b;
    std::vector<int> owner;
    for (size_t k = 0; k < ref.prompts[p].size(); k++) {
      b.add(ref.prompts[p][k], static_cast<int32_t>(k), static_cast<int32_t>(100 + p));
      owner.push_back(static_cast<int>(p));
    }
    if (mt::run_check(o.m, rank, b, owner, ref, ref.bf16 ? 3e-2 : 1e-4)) return 1;
  }
  const int32_t np = static_cast<int32_t>(ref.prompts.size()), max_new = 24;
  std::vector<const int32_t*> prompts;
  std::vector<int32_t> lens, out(static_cast<size_t>(np * max_new), -1), counts(static_cast<size_t>(np), -1);
  for (auto& p : ref.prompts) prompts.push_back(p.data()), lens.push_back(static_cast<int32_t>(p.size()));
  tppp_generate_params gen;
  tppp_generate_params_init(&gen, sizeof gen);
  gen.max_new = max_new;
  RANK_OK(tppp_model_generate(o.m, np, prompts.data(), lens.data(), &gen, out.data(), counts.data(), nullptr));
  if (rank != 0) return 0;
  const int check = ref.bf16 ? 4 : max_new;
  for (int32_t p = 0; p < np; p++)
    for (int t = 0; t < check; t++)
      RANK_CHECK(out[static_cast<size_t>(p * max_new + t)] == ref.tokens[static_cast<size_t>(p)][static_cast<size_t>(t)],
                 "%s prompt %d token %d: %d, transformers %d", name.c_str(), p, t,
                 out[static_cast<size_t>(p * max_new + t)], ref.tokens[static_cast<size_t>(p)][static_cast<size_t>(t)]);
  return steps_on_gpu(o.m, rank, ref, name);
}

// tppp_checkpoint_load_rank into device memory equals the host load, byte
// for byte (vocab padding included), with and without dtype conversion.
int device_load(int dev) {
  tppp_checkpoint_t c = nullptr;
  RANK_OK(tppp_checkpoint_open(mt::ckpt("qwen2").c_str(), &c));
  for (int tp_rank = 0; tp_rank < 2; tp_rank++)
    for (int32_t dt : {-1, int32_t(TPPP_DTYPE_BF16)}) {
      tppp_shard_params sp;
      tppp_shard_params_init(&sp, sizeof sp);
      sp.tp_size = 2;
      sp.tp_rank = tp_rank;
      tppp_load_params lp;
      tppp_load_params_init(&lp, sizeof lp);
      lp.dtype = dt;
      tppp_weights_t host = nullptr, gpu = nullptr;
      RANK_OK(tppp_checkpoint_load_rank(c, &sp, &lp, &host));
      lp.device = dev;
      lp.num_streams = 3;
      RANK_OK(tppp_checkpoint_load_rank(c, &sp, &lp, &gpu));
      size_t n = 0, ng = 0;
      RANK_OK(tppp_weights_count(host, &n));
      RANK_OK(tppp_weights_count(gpu, &ng));
      RANK_CHECK(n == ng, "%zu host tensors, %zu device tensors", n, ng);
      for (size_t i = 0; i < n; i++) {
        const char *name = nullptr, *gname = nullptr;
        tppp_tensor h, g;
        RANK_OK(tppp_weights_get(host, i, &name, &h));
        RANK_OK(tppp_weights_get(gpu, i, &gname, &g));
        RANK_CHECK(std::string(name) == gname && g.mem_kind == TPPP_MEM_CUDA && g.device == dev, "entry %zu", i);
        size_t bytes = tppp::dtype_size(h.dtype);
        for (int d = 0; d < h.ndim; d++) bytes *= static_cast<size_t>(h.shape[d]);
        std::vector<char> back(bytes);
        RANK_CHECK(cudaMemcpy(back.data(), g.data, bytes, cudaMemcpyDeviceToHost) == cudaSuccess, "copy back");
        RANK_CHECK(std::memcmp(back.data(), h.data, bytes) == 0, "'%s' (tp rank %d, dtype %d) differs on the device",
                   name, tp_rank, dt);
      }
      tppp_weights_free(gpu);
      tppp_weights_free(host);
    }
  tppp_checkpoint_close(c);
  return 0;
}

// The scheduler on device memory: PP = 2 ranks sharing the GPU (UCX,
// staged), fill-drain over 3 micro-batches and a decode ring of 3 steps;
// stage s adds s + 1 to every element on the host's stream (device in and
// out on the last stage and stage 0).
struct AddCtx {
  tppp::Backend* be;
  void* ones;  // [hidden] f32, device, all s + 1
  void* stream;
};
int32_t add_stage(void* user, int32_t, int32_t, const tppp_tensor* in, const tppp_tensor* out) {
  AddCtx* c = static_cast<AddCtx*>(user);
  if (in->mem_kind != TPPP_MEM_CUDA || out->mem_kind != TPPP_MEM_CUDA) return 7;
  const size_t n = static_cast<size_t>(in->shape[0] * in->shape[1]);
  c->be->copy(out->data, in->data, n * 4, c->stream);
  c->be->add_bias(out->data, c->ones, in->shape[0], in->shape[1], TPPP_DTYPE_F32, TPPP_DTYPE_F32, c->stream);
  return 0;
}
int device_pipeline(int rank, const tppp_unique_id& id, int dev) {
  tppp_group_params gp = th::params(1, 2, 60000);
  gp.device = dev;
  tppp_group_t g = nullptr;
  RANK_OK(tppp_group_create(&id, 2, rank, &gp, &g));
  cudaSetDevice(dev);
  auto be = tppp::create_cuda_backend(dev);
  cudaStream_t st = nullptr;
  cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking);
  const int64_t rows = 7, H = 64;
  std::vector<float> ones(H, static_cast<float>(rank + 1)), host(static_cast<size_t>(rows * H));
  for (size_t i = 0; i < host.size(); i++) host[i] = static_cast<float>(i % 97) * 0.5f;
  Buf dones(ones), din(host), dout(host.size() * 4);
  AddCtx ctx{be.get(), dones.p, st};
  for (int ring = 0; ring < 2; ring++) {
    tppp_scheduler_params sp;
    tppp_scheduler_params_init(&sp, sizeof sp);
    sp.policy = ring ? TPPP_POLICY_DECODE_RING : TPPP_POLICY_FILL_DRAIN;
    sp.num_microbatches = 3;
    sp.steps = ring ? 3 : 1;
    sp.hidden = H;
    sp.stream = st;
    tppp_scheduler_t s = nullptr;
    RANK_OK(tppp_scheduler_create(g, &sp, &s));
    RANK_OK(tppp_scheduler_set_stage_fn(s, add_stage, &ctx));
    dout.poison();
    tppp_tensor tin{}, tout{};
    tin.data = din.p, tin.mem_kind = TPPP_MEM_CUDA, tin.device = dev, tin.dtype = TPPP_DTYPE_F32, tin.ndim = 2;
    tin.shape[0] = rows, tin.shape[1] = H;
    tout = tin;
    tout.data = dout.p;
    RANK_OK(tppp_scheduler_run(s, rank == 0 ? &tin : nullptr, rank == 1 ? &tout : nullptr));
    if (rank == 1) {
      const std::vector<char> got = dout.get();
      const float add = 3.0f * static_cast<float>(sp.steps);  // stages add 1 and 2 per step
      for (size_t i = 0; i < host.size(); i++) {
        float v;
        std::memcpy(&v, got.data() + i * 4, 4);
        RANK_CHECK(v == host[i] + add, "%s: element %zu is %g, want %g", ring ? "decode ring" : "fill-drain", i, v,
                   host[i] + add);
      }
    }
    tppp_scheduler_destroy(s);
  }
  cudaStreamDestroy(st);
  tppp_group_destroy(g);
  return 0;
}

// Greedy decode with CUDA graphs (the default) or eager (TPPP_CUDA_GRAPHS=0;
// read once per process, so each runs in its own child): tokens written to
// `path` for the parent to compare, with the count of replayed steps first.
// Batches of 3 and then 1 sequence exercise two buckets and their padding.
int graph_tokens(const tppp_unique_id& id, int dev, const std::string& name, bool graphs, const std::string& path) {
  if (!graphs) setenv("TPPP_CUDA_GRAPHS", "0", 1);
  const mt::Ref ref = mt::load_ref(name);
  mt::Open o;
  if (mt::open_model(id, 0, 1, 1, name, &o, 4096, 16, 60000, false, dev)) return 1;
  std::vector<int32_t> all;
  for (int32_t np : {3, 1}) {
    const int32_t max_new = 12;
    std::vector<const int32_t*> prompts;
    std::vector<int32_t> lens, toks(static_cast<size_t>(np * max_new), -1), counts(static_cast<size_t>(np), -1);
    for (int32_t p = 0; p < np; p++) {
      prompts.push_back(ref.prompts[static_cast<size_t>(p)].data());
      lens.push_back(static_cast<int32_t>(ref.prompts[static_cast<size_t>(p)].size()));
    }
    tppp_generate_params gen;
    tppp_generate_params_init(&gen, sizeof gen);
    gen.max_new = max_new;
    RANK_OK(tppp_model_generate(o.m, np, prompts.data(), lens.data(), &gen, toks.data(), counts.data(), nullptr));
    all.insert(all.end(), toks.begin(), toks.end());
  }
  tppp_model_stats st;
  std::memset(&st, 0, sizeof st);
  st.struct_size = sizeof st;
  RANK_OK(tppp_model_get_stats(o.m, &st));
  std::FILE* f = std::fopen(path.c_str(), "w");
  RANK_CHECK(f, "cannot write %s", path.c_str());
  std::fprintf(f, "%lld", static_cast<long long>(st.graph_replays));
  for (int32_t t : all) std::fprintf(f, " %d", t);
  std::fclose(f);
  return 0;
}

std::vector<long long> read_numbers(const std::string& path) {
  std::vector<long long> v;
  std::FILE* f = std::fopen(path.c_str(), "r");
  long long x;
  while (f && std::fscanf(f, "%lld", &x) == 1) v.push_back(x);
  if (f) std::fclose(f);
  return v;
}

}  // namespace

TEST_SUITE("cuda") {
  TEST_CASE("decode steps replayed as CUDA graphs give the eager tokens") {
    if (no_gpu()) return;
    for (const char* m : {"llama_hd64_bf16", "qwen2"}) {
      CAPTURE(m);
      const std::string a = "/tmp/tppp_graphs_on." + std::to_string(getpid()), b = "/tmp/tppp_graphs_off." + std::to_string(getpid());
      for (int graphs = 1; graphs >= 0; graphs--) {
        auto codes = th::run_ranks(1, 300, [&](int, const tppp_unique_id& id) {
          return graph_tokens(id, test_device(), m, graphs != 0, graphs ? a : b);
        });
        REQUIRE_MESSAGE(th::all_zero(codes), th::codes_str(codes));
      }
      const std::vector<long long> on = read_numbers(a), off = read_numbers(b);
      std::remove(a.c_str());
      std::remove(b.c_str());
      REQUIRE(on.size() == off.size());
      REQUIRE(on.size() > 1);
      CHECK_MESSAGE(on[0] > 0, "no decode step replayed a CUDA graph");
      CHECK(off[0] == 0);
      CHECK(std::vector<long long>(on.begin() + 1, on.end()) == std::vector<long long>(off.begin() + 1, off.end()));
    }
  }
  TEST_CASE("the scheduler moves device activations between stages sharing the GPU") {
    if (no_gpu()) return;
    auto codes = th::run_ranks(2, 120, [](int r, const tppp_unique_id& id) { return device_pipeline(r, id, test_device()); });
    CHECK_MESSAGE(th::all_zero(codes), th::codes_str(codes));
  }
  TEST_CASE("rank-wide load into device memory equals the host load") {
    if (no_gpu()) return;
    auto codes = th::run_ranks(1, 120, [](int, const tppp_unique_id&) { return device_load(test_device()); });
    CHECK_MESSAGE(th::all_zero(codes), th::codes_str(codes));
  }
  TEST_CASE("decoder ops on the CUDA backend match the CPU backend") {
    if (no_gpu()) return;
    auto codes = th::run_ranks(1, 300, [](int, const tppp_unique_id&) { return decoder_ops(test_device()); });
    CHECK_MESSAGE(th::all_zero(codes), th::codes_str(codes));
  }
  TEST_CASE("FlashInfer paged decode and prefill match the CPU attention") {
    if (no_gpu()) return;
    auto codes = th::run_ranks(1, 300, [](int, const tppp_unique_id&) { return flashinfer_attention(test_device()); });
    CHECK_MESSAGE(th::all_zero(codes), th::codes_str(codes));
  }
  TEST_CASE("FlashInfer in CUDA-graph mode on a padded decode batch, replayed after a new plan") {
    if (no_gpu()) return;
    auto codes = th::run_ranks(1, 300, [](int, const tppp_unique_id&) { return flashinfer_graph_padded(test_device()); });
    CHECK_MESSAGE(th::all_zero(codes), th::codes_str(codes));
  }
  TEST_CASE("models on the GPU match transformers (ranks sharing the GPU over UCX)") {
    if (no_gpu()) return;
    struct Case {
      const char* model;
      int tp, pp;
    };
    const Case cases[] = {{"llama", 1, 1}, {"qwen2", 1, 1}, {"qwen3", 1, 1}, {"qwen2_bf16", 1, 1},
                          {"llama_hd64_bf16", 1, 1}, {"llama", 2, 2}, {"qwen3", 2, 1}, {"qwen2", 1, 2},
                          {"llama_hd64_bf16", 2, 2}};
    for (const Case& c : cases) {
      CAPTURE(c.model);
      CAPTURE(c.tp);
      CAPTURE(c.pp);
      auto codes = th::run_ranks(c.tp * c.pp, 300, [&](int r, const tppp_unique_id& id) {
        return model_on_gpu(r, id, test_device(), c.tp, c.pp, c.model);
      });
      CHECK_MESSAGE(th::all_zero(codes), th::codes_str(codes));
    }
  }
}
#endif
