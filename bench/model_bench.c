/* bench/model: the model runtime's prefill and decode speed on one grid
 * (bench/model.sh runs it beside transformers and the roofline).
 *
 *   tppp-run -n W -- model_bench CKPT --tp N --pp M [--batch B] [--prompt L]
 *                    [--steps S] [--reps R] [--chunk T] [--microbatches G]
 *     every rank: B sequences of L random tokens (the same on every rank).
 *     Prints on the driver, best of R:
 *       gen  <prefill tok/s> <decode tok/s>     tppp_model_generate with
 *            max_new 1 (prefill) and 1 + S (decode = the difference)
 *       rss  <MB>                               resident memory once the model is made
 *       step <median ms>                        one decode forward of B tokens
 *                                               (tppp_model_forward, the stages
 *                                               in turn)
 *   model_bench --bandwidth T                   this machine's memory read speed:
 *                                               T threads summing 1 GiB, best of 5,
 *                                               "bw <GB/s>" (the roofline's divisor)
 *
 * The second form is the roofline's divisor: a decode step must read every
 * weight once, so weight bytes / bandwidth bounds it from below. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench_time.h"
#include "c_api.h"

/* --bandwidth T: T threads each read their part of 1 GiB, best of 5 passes.
 * With AVX2 (cpuid) 256-bit loads into four accumulators, as the GEMM reads
 * its weights; else 64-bit loads. */
struct bw_part {
  const uint64_t* p;
  size_t n;
  uint64_t sum;
};
#if defined(__x86_64__)
#include <immintrin.h>
__attribute__((target("avx2"))) static uint64_t bw_read_avx2(const uint64_t* p, size_t n) {
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
  for (size_t i = 0; i + 16 <= n; i += 16) {
    a0 = _mm256_add_epi64(a0, _mm256_load_si256((const __m256i*)(p + i)));
    a1 = _mm256_add_epi64(a1, _mm256_load_si256((const __m256i*)(p + i + 4)));
    a2 = _mm256_add_epi64(a2, _mm256_load_si256((const __m256i*)(p + i + 8)));
    a3 = _mm256_add_epi64(a3, _mm256_load_si256((const __m256i*)(p + i + 12)));
  }
  a0 = _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3));
  return (uint64_t)_mm256_extract_epi64(a0, 0) + (uint64_t)_mm256_extract_epi64(a0, 3);
}
#endif
static void* bw_read(void* arg) {
  struct bw_part* b = arg;
#if defined(__x86_64__)
  if (__builtin_cpu_supports("avx2")) {
    b->sum = bw_read_avx2(b->p, b->n);
    return NULL;
  }
#endif
  uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
  for (size_t i = 0; i + 4 <= b->n; i += 4) a0 += b->p[i], a1 += b->p[i + 1], a2 += b->p[i + 2], a3 += b->p[i + 3];
  b->sum = a0 + a1 + a2 + a3;
  return NULL;
}
static int bandwidth(int threads) {
  const size_t n = ((size_t)1 << 30) / 8;
  char* raw = malloc(n * 8 + 64);
  if (!raw || threads < 1 || threads > 256) return 2;
  uint64_t* p = (uint64_t*)(((uintptr_t)raw + 63) & ~(uintptr_t)63); /* 64-byte aligned: aligned loads */
  for (size_t i = 0; i < n; i++) p[i] = i;
  double best = 1e30;
  uint64_t sink = 0;
  for (int r = 0; r < 5; r++) {
    pthread_t th[256];
    struct bw_part parts[256];
    const double t0 = now_s();
    for (int t = 0; t < threads; t++) {
      /* whole 128-byte blocks per thread, 64-byte aligned */
      const size_t per = n / (size_t)threads / 16 * 16;
      parts[t].p = p + per * (size_t)t, parts[t].n = per;
      pthread_create(&th[t], NULL, bw_read, &parts[t]);
    }
    for (int t = 0; t < threads; t++) pthread_join(th[t], NULL), sink += parts[t].sum;
    const double dt = now_s() - t0;
    if (dt < best) best = dt;
  }
  const size_t read = n / (size_t)threads / 16 * 16 * (size_t)threads * 8;
  printf("bw %.2f\n", (double)read / best / 1e9 + (double)(sink & 0));
  free(raw);
  return 0;
}

#define CHECK(call)                                                                                         \
  do {                                                                                                      \
    tppp_status s_ = (call);                                                                                \
    if (s_ != TPPP_OK) {                                                                                    \
      fprintf(stderr, "%s failed: %s: %s\n", #call, tppp_status_string(s_), tppp_last_error());            \
      return 1;                                                                                             \
    }                                                                                                       \
  } while (0)

int main(int argc, char** argv) {
  if (argc == 3 && !strcmp(argv[1], "--bandwidth")) return bandwidth(atoi(argv[2]));
  const char* ckpt = argc > 1 ? argv[1] : NULL;
  int tp = 1, pp = 1, batch = 4, plen = 128, steps = 32, reps = 3, chunk = 0, mbs = 0;
  for (int i = 2; i + 1 < argc; i += 2) {
    const int v = atoi(argv[i + 1]);
    if (!strcmp(argv[i], "--tp")) tp = v;
    else if (!strcmp(argv[i], "--pp")) pp = v;
    else if (!strcmp(argv[i], "--batch")) batch = v;
    else if (!strcmp(argv[i], "--prompt")) plen = v;
    else if (!strcmp(argv[i], "--steps")) steps = v;
    else if (!strcmp(argv[i], "--reps")) reps = v;
    else if (!strcmp(argv[i], "--chunk")) chunk = v;
    else if (!strcmp(argv[i], "--microbatches")) mbs = v;
    else ckpt = NULL;
  }
  if (!ckpt || tp < 1 || pp < 1 || batch < 1 || plen < 1 || steps < 1 || reps < 1) {
    fprintf(stderr, "usage: model_bench CKPT --tp N --pp M [--batch B] [--prompt L] [--steps S] [--reps R] [--chunk T] "
                    "[--microbatches G]\n"
                    "       model_bench --bandwidth T\n");
    return 2;
  }
  tppp_group_params gp;
  tppp_group_params_init(&gp, sizeof gp);
  gp.tp_size = tp;
  gp.pp_size = pp;
  gp.timeout_ms = 600000;
  tppp_group_t g = NULL;
  CHECK(tppp_group_create_from_env(&gp, &g));
  tppp_group_info gi;
  gi.struct_size = sizeof gi;
  CHECK(tppp_group_get_info(g, &gi));
  tppp_checkpoint_t c = NULL;
  CHECK(tppp_checkpoint_open(ckpt, &c));
  tppp_model_params mp;
  tppp_model_params_init(&mp, sizeof mp);
  mp.kv_tokens = (int64_t)batch * (plen + steps + 2) + 64 * batch;
  mp.max_batch = batch * plen;
  tppp_model_t m = NULL;
  CHECK(tppp_model_create(g, c, &mp, &m));
  tppp_checkpoint_close(c);
  /* Resident memory once the model is made (weights, KV cache, scratch): Linux's statm, in pages. */
  long rss_pages = 0;
  FILE* statm = fopen("/proc/self/statm", "r");
  if (statm) {
    if (fscanf(statm, "%*ld %ld", &rss_pages) != 1) rss_pages = 0;
    fclose(statm);
  }
  tppp_model_info info;
  info.struct_size = sizeof info;
  CHECK(tppp_model_get_info(m, &info));

  /* B prompts of L random ids, the same on every rank. */
  int32_t* ids = malloc(sizeof(int32_t) * (size_t)batch * (size_t)plen);
  const int32_t** prompts = malloc(sizeof(*prompts) * (size_t)batch);
  int32_t* lens = malloc(sizeof(int32_t) * (size_t)batch);
  uint64_t s = 7;
  for (int i = 0; i < batch * plen; i++) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    ids[i] = (int32_t)((s >> 33) % (uint64_t)info.vocab_size);
  }
  for (int i = 0; i < batch; i++) prompts[i] = ids + (size_t)i * (size_t)plen, lens[i] = plen;
  int32_t* out = malloc(sizeof(int32_t) * (size_t)batch * (size_t)(steps + 1));
  int32_t* counts = malloc(sizeof(int32_t) * (size_t)batch);
  tppp_generate_params gen;
  tppp_generate_params_init(&gen, sizeof gen);
  gen.prefill_chunk = chunk;
  gen.microbatches = mbs;

  double best_p = 1e30, best_g = 1e30;
  for (int r = 0; r < reps; r++) {
    CHECK(tppp_barrier(g, TPPP_SCOPE_WORLD));
    gen.max_new = 1;
    double t0 = now_s();
    CHECK(tppp_model_generate(m, batch, prompts, lens, &gen, out, counts, NULL));
    const double tp_ = now_s() - t0;
    CHECK(tppp_barrier(g, TPPP_SCOPE_WORLD));
    gen.max_new = 1 + steps;
    t0 = now_s();
    CHECK(tppp_model_generate(m, batch, prompts, lens, &gen, out, counts, NULL));
    const double tg = now_s() - t0;
    if (tp_ < best_p) best_p = tp_;
    if (tg - tp_ < best_g) best_g = tg - tp_;
  }
  /* Decode steps through tppp_model_forward: prefill once, then S steps of B tokens. */
  int32_t* tok = malloc(sizeof(int32_t) * (size_t)batch * (size_t)plen);
  int32_t* pos = malloc(sizeof(int32_t) * (size_t)batch * (size_t)plen);
  int32_t* seq = malloc(sizeof(int32_t) * (size_t)batch * (size_t)plen);
  int8_t* want = malloc((size_t)batch * (size_t)plen);
  int64_t* next = malloc(sizeof(int64_t) * (size_t)batch);
  for (int i = 0; i < batch; i++)
    for (int k = 0; k < plen; k++) {
      const size_t at = (size_t)i * (size_t)plen + (size_t)k;
      tok[at] = ids[at], pos[at] = k, seq[at] = i, want[at] = k == plen - 1;
    }
  tppp_batch b = {batch * plen, tok, pos, seq, want};
  CHECK(tppp_model_forward(m, &b, TPPP_OUT_IDS, NULL, gi.rank == 0 ? next : NULL, NULL));
  double* st = malloc(sizeof(double) * (size_t)steps);
  for (int k = 0; k < steps; k++) {
    for (int i = 0; i < batch; i++) tok[i] = (int32_t)((7 * k + 13 * i) % info.vocab_size), pos[i] = plen + k, seq[i] = i, want[i] = 1;
    tppp_batch d = {batch, tok, pos, seq, want};
    const double t0 = now_s();
    CHECK(tppp_model_forward(m, &d, TPPP_OUT_IDS, NULL, gi.rank == 0 ? next : NULL, NULL));
    st[k] = now_s() - t0;
  }
  if (gi.rank == 0) {
    printf("gen %.1f %.1f\n", (double)batch * plen / best_p, (double)batch * steps / best_g);
    printf("step %.3f\n", median(st, steps) * 1e3);
    printf("rss %.1f\n", (double)rss_pages * (double)sysconf(_SC_PAGESIZE) / 1e6);
  }
  tppp_model_destroy(m);
  tppp_group_destroy(g);
  free(ids), free(prompts), free(lens), free(out), free(counts), free(tok), free(pos), free(seq), free(want);
  free(next), free(st);
  return 0;
}
