/* bench/model_gpu: the model runtime on one GPU (TP=1, PP=1): weight loading,
 * decode step time per batch size after a prompt, and one long prefill.
 * bench/model_gpu.sh runs it beside transformers (eager and torch.compile)
 * and the roofline, and writes the table.
 *
 *   model_gpu CKPT [--device D] [--prompt L] [--batches 1,8,32] [--steps S]
 *             [--prefill T] [--reps R] [--kv-tokens K]
 * Prints, one per line:
 *   load_rank_s <s> <bytes>   tppp_checkpoint_load_rank into device memory (the
 *                             host API's rank-wide load), best of R
 *   create_s <s>              tppp_model_create (weights to the GPU included)
 *   decode_ms <B> <ms>        median decode step of B sequences (one token each,
 *                             ids back on the host) after B prompts of L tokens
 *   prefill_ms <T> <ms>       one sequence of T tokens, median of R */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_time.h"
#include "c_api.h"

#define CHECK(call)                                                                                 \
  do {                                                                                              \
    tppp_status s_ = (call);                                                                        \
    if (s_ != TPPP_OK) {                                                                            \
      fprintf(stderr, "%s:%d %s -> %s: %s\n", __FILE__, __LINE__, #call, tppp_status_string(s_),   \
              tppp_last_error());                                                                   \
      exit(1);                                                                                      \
    }                                                                                               \
  } while (0)

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: model_gpu CKPT [--device D] [--prompt L] [--batches 1,8,32] [--steps S] [--prefill T] "
                    "[--reps R] [--kv-tokens K]\n");
    return 2;
  }
  const char* ckpt = argv[1];
  int device = 0, prompt = 128, steps = 32, prefill = 2048, reps = 3;
  int64_t kv_tokens = 16384;
  const char* batches = "1,8,32";
  for (int i = 2; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--device")) device = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--prompt")) prompt = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--batches")) batches = argv[i + 1];
    else if (!strcmp(argv[i], "--steps")) steps = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--prefill")) prefill = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--reps")) reps = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--kv-tokens")) kv_tokens = atoll(argv[i + 1]);
    else {
      fprintf(stderr, "unknown option %s\n", argv[i]);
      return 2;
    }
  }
  tppp_checkpoint_t c = NULL;
  CHECK(tppp_checkpoint_open(ckpt, &c));

  /* The host API's rank-wide load into device memory. */
  double best = 1e30;
  uint64_t bytes = 0;
  for (int r = 0; r < reps; r++) {
    tppp_shard_params sp;
    tppp_shard_params_init(&sp, sizeof sp);
    tppp_load_params lp;
    tppp_load_params_init(&lp, sizeof lp);
    lp.device = device;
    tppp_weights_t w = NULL;
    const double t0 = now_s();
    CHECK(tppp_checkpoint_load_rank(c, &sp, &lp, &w));
    const double t = now_s() - t0;
    if (t < best) best = t;
    size_t n = 0;
    CHECK(tppp_weights_count(w, &n));
    bytes = 0;
    for (size_t i = 0; i < n; i++) {
      const char* name;
      tppp_tensor t2;
      CHECK(tppp_weights_get(w, i, &name, &t2));
      size_t es = 0;
      CHECK(tppp_dtype_size(t2.dtype, &es));
      uint64_t b = es;
      for (int d = 0; d < t2.ndim; d++) b *= (uint64_t)t2.shape[d];
      bytes += b;
    }
    tppp_weights_free(w);
  }
  printf("load_rank_s %.4f %llu\n", best, (unsigned long long)bytes);
  fflush(stdout);

  tppp_group_params gp;
  tppp_group_params_init(&gp, sizeof gp);
  gp.device = device;
  tppp_group_t g = NULL;
  CHECK(tppp_group_create_from_env(&gp, &g));
  tppp_model_params mp;
  tppp_model_params_init(&mp, sizeof mp);
  mp.kv_tokens = kv_tokens;
  mp.max_batch = prefill > 4096 ? prefill : 4096;
  mp.max_seqs = 64;
  tppp_model_t m = NULL;
  double t0 = now_s();
  CHECK(tppp_model_create(g, c, &mp, &m));
  printf("create_s %.3f\n", now_s() - t0);
  fflush(stdout);
  tppp_model_info info;
  info.struct_size = sizeof info;
  CHECK(tppp_model_get_info(m, &info));
  const int32_t V = (int32_t)info.vocab_size;

  int nmax = prefill > 32 * prompt ? prefill : 32 * prompt;
  int32_t* tok = malloc(sizeof(int32_t) * (size_t)nmax);
  int32_t* pos = malloc(sizeof(int32_t) * (size_t)nmax);
  int32_t* seq = malloc(sizeof(int32_t) * (size_t)nmax);
  int8_t* want = malloc((size_t)nmax);
  int64_t* ids = malloc(sizeof(int64_t) * (size_t)nmax);
  double* times = malloc(sizeof(double) * (size_t)(steps > reps ? steps : reps));
  uint64_t rng = 12345;

  char* list = strdup(batches);
  for (char* bs = strtok(list, ","); bs; bs = strtok(NULL, ",")) {
    const int B = atoi(bs);
    if (B <= 0 || B > 64) { fprintf(stderr, "batch %d outside [1, 64]\n", B); return 2; }
    int n = 0;
    for (int s = 0; s < B; s++)
      for (int p = 0; p < prompt; p++) {
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        tok[n] = (int32_t)((rng >> 33) % (uint64_t)V), pos[n] = p, seq[n] = s, want[n] = p == prompt - 1, n++;
      }
    tppp_batch b = {n, tok, pos, seq, want};
    int32_t nout = 0;
    CHECK(tppp_model_forward(m, &b, TPPP_OUT_IDS, NULL, ids, &nout));
    int64_t last[64];
    for (int s = 0; s < B; s++) last[s] = ids[s];
    for (int k = 0; k < steps + 3; k++) {  /* 3 warm-up steps */
      for (int s = 0; s < B; s++) tok[s] = (int32_t)last[s], pos[s] = prompt + k, seq[s] = s, want[s] = 1;
      tppp_batch d = {B, tok, pos, seq, want};
      const double t1 = now_s();
      CHECK(tppp_model_forward(m, &d, TPPP_OUT_IDS, NULL, ids, &nout));
      if (k >= 3) times[k - 3] = now_s() - t1;
      for (int s = 0; s < B; s++) last[s] = ids[s];
    }
    printf("decode_ms %d %.3f\n", B, 1e3 * median(times, steps));
    fflush(stdout);
    for (int s = 0; s < B; s++) CHECK(tppp_model_remove_seq(m, s));
  }
  free(list);

  for (int r = 0; r < reps + 1; r++) {  /* the first is a warm-up */
    for (int p = 0; p < prefill; p++) {
      rng = rng * 6364136223846793005ull + 1442695040888963407ull;
      tok[p] = (int32_t)((rng >> 33) % (uint64_t)V), pos[p] = p, seq[p] = 0, want[p] = p == prefill - 1;
    }
    tppp_batch b = {prefill, tok, pos, seq, want};
    int32_t nout = 0;
    const double t1 = now_s();
    CHECK(tppp_model_forward(m, &b, TPPP_OUT_IDS, NULL, ids, &nout));
    if (r > 0) times[r - 1] = now_s() - t1;
    CHECK(tppp_model_remove_seq(m, 0));
  }
  printf("prefill_ms %d %.3f\n", prefill, 1e3 * median(times, reps));
  tppp_model_destroy(m);
  tppp_group_destroy(g);
  tppp_checkpoint_close(c);
  free(tok), free(pos), free(seq), free(want), free(ids), free(times);
  return 0;
}
