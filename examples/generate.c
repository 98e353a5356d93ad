/* Greedy generation with libtppp's model runtime over a TP x PP grid:
 *
 *   tppp-run -n 4 -- generate CKPT [--tp N] [--pp M] --prompt-ids "5,17,300"
 *            [--prompt-ids ...] [--max-new N] [--dump-logits FILE]
 *            [--dtype f32|f16|bf16] [--reference] [--microbatches G]
 *            [--chunk T] [--follow] [--device N] [--temperature T] [--top-k K]
 *            [--top-p P] [--min-p P] [--seed S] [--ignore-eos] [--timeout-ms MS]
 *
 * Every rank loads its part of the checkpoint (its stage's layers, its TP
 * rank's heads) and calls tppp_model_generate; the driver (rank 0) prints,
 * for each prompt in order, "tokens: <ids>", then tokens/s and each stage's
 * busy/idle time. --dump-logits writes each prompt's last-position logits
 * (before any generated token) as little-endian f32 [prompts, vocab].
 * --reference reads CKPT/reference.json (written by transformers, see
 * tests/fixtures/make_model_fixtures.py): its prompts when none are given,
 * and its greedy tokens, and says whether ours match. tp defaults to
 * world / pp. --microbatches: groups of sequences in flight (PP > 1;
 * default min(PP, prompts / 16), at least 1); --chunk: prompt tokens per micro-batch; --follow:
 * only the driver calls generate, the other ranks follow it
 * (tppp_model_follow); --device: the CUDA GPU every rank computes on (ranks
 * may share it; default: the CPU). --temperature/--top-k/--top-p/--min-p/
 * --seed sample on the last stage (default greedy; a seed gives the same
 * tokens on every grid); generation stops at the model's EOS ids unless
 * --ignore-eos. --reference compares greedy tokens only. --timeout-ms: the
 * group's timeout for every blocking step (default 60000). Errors name the
 * rank's own number: the launcher's (RANK, OMPI_COMM_WORLD_RANK or
 * SLURM_PROCID) until the group exists. Exit status: 0, or 1 on an error or
 * a mismatch. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "c_api.h"

#define MAX_PROMPTS 64
#define MAX_LEN 4096

static int32_t* prompt[MAX_PROMPTS];
static int32_t plen[MAX_PROMPTS];
static int nprompt;
static int32_t* expect[MAX_PROMPTS];
static int32_t elen[MAX_PROMPTS];
static int nexpect;

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* "5,17,300" -> ids; returns the count or -1. */
static int parse_ids(const char* s, int32_t** out) {
  int32_t* v = malloc(sizeof *v * MAX_LEN);
  int n = 0;
  while (*s && n < MAX_LEN) {
    char* end;
    long x = strtol(s, &end, 10);
    if (end == s || x < 0 || x > INT32_MAX) {
      free(v);
      return -1;
    }
    v[n++] = (int32_t)x;
    s = end;
    while (*s == ',' || *s == ' ') s++;
  }
  *out = v;
  return n;
}

/* The list of int lists after "key": in a JSON file, e.g. "tokens": [[1, 2], [3]]. */
static int json_lists(const char* text, const char* key, int32_t** lists, int32_t* lens, int max) {
  const char* p = strstr(text, key);
  if (!p || !(p = strchr(p + strlen(key), '['))) return -1;
  p++;
  int n = 0;
  while (*p && n < max) {
    while (*p == ' ' || *p == '\n' || *p == ',') p++;
    if (*p == ']') return n;
    if (*p != '[') return -1;
    p++;
    lists[n] = malloc(sizeof(int32_t) * MAX_LEN);
    lens[n] = 0;
    while (*p && *p != ']') {
      char* end;
      long x = strtol(p, &end, 10);
      if (end == p) return -1;
      if (lens[n] < MAX_LEN) lists[n][lens[n]++] = (int32_t)x;
      p = end;
      while (*p == ' ' || *p == '\n' || *p == ',') p++;
    }
    p++;
    n++;
  }
  return n;
}

static char* read_file(const char* path) {
  FILE* f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char* s = malloc((size_t)n + 1);
  if (fread(s, 1, (size_t)n, f) != (size_t)n) n = 0;
  s[n] = 0;
  fclose(f);
  return s;
}

static void on_token(void* user, int32_t p, int32_t t) {
  (void)user, (void)p, (void)t; /* a server would stream here */
}

#define CHECK(call)                                                                                   \
  do {                                                                                                \
    tppp_status s_ = (call);                                                                          \
    if (s_ != TPPP_OK) {                                                                              \
      fprintf(stderr, "rank %d: %s failed: %s: %s\n", rank, #call, tppp_status_string(s_), tppp_last_error()); \
      return 1;                                                                                       \
    }                                                                                                 \
  } while (0)

/* This process's rank as its launcher numbered it (before a group exists). */
static int launcher_rank(void) {
  const char* keys[] = {"RANK", "OMPI_COMM_WORLD_RANK", "SLURM_PROCID"};
  for (int i = 0; i < 3; i++) {
    const char* v = getenv(keys[i]);
    if (v && *v) return atoi(v);
  }
  return 0;
}

int main(int argc, char** argv) {
  const char* ckpt = NULL;
  const char* dump = NULL;
  int tp = 0, pp = 1, max_new = 16, reference = 0, rank = 0, mbs = 0, chunk = 0, follow = 0, device = TPPP_DEVICE_CPU;
  int32_t dtype = -1;
  int ignore_eos = 0, timeout_ms = 0;
  rank = launcher_rank();
  tppp_sampling_params sp;
  tppp_sampling_params_init(&sp, sizeof sp);
  for (int i = 1; i < argc; i++) {
    const char* a = argv[i];
    const char* v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--tp") && v) tp = atoi(argv[++i]);
    else if (!strcmp(a, "--pp") && v) pp = atoi(argv[++i]);
    else if (!strcmp(a, "--max-new") && v) max_new = atoi(argv[++i]);
    else if (!strcmp(a, "--dump-logits") && v) dump = argv[++i];
    else if (!strcmp(a, "--reference")) reference = 1;
    else if (!strcmp(a, "--follow")) follow = 1;
    else if (!strcmp(a, "--microbatches") && v) mbs = atoi(argv[++i]);
    else if (!strcmp(a, "--chunk") && v) chunk = atoi(argv[++i]);
    else if (!strcmp(a, "--device") && v) device = atoi(argv[++i]);
    else if (!strcmp(a, "--temperature") && v) sp.temperature = (float)atof(argv[++i]);
    else if (!strcmp(a, "--top-k") && v) sp.top_k = atoi(argv[++i]);
    else if (!strcmp(a, "--top-p") && v) sp.top_p = (float)atof(argv[++i]);
    else if (!strcmp(a, "--min-p") && v) sp.min_p = (float)atof(argv[++i]);
    else if (!strcmp(a, "--seed") && v) sp.seed = strtoull(argv[++i], NULL, 10);
    else if (!strcmp(a, "--ignore-eos")) ignore_eos = 1;
    else if (!strcmp(a, "--timeout-ms") && v) timeout_ms = atoi(argv[++i]);
    else if (!strcmp(a, "--dtype") && v) {
      i++;
      dtype = !strcmp(v, "f32") ? TPPP_DTYPE_F32 : !strcmp(v, "f16") ? TPPP_DTYPE_F16 : !strcmp(v, "bf16") ? TPPP_DTYPE_BF16 : -2;
      if (dtype == -2) { fprintf(stderr, "--dtype %s: f32, f16 or bf16\n", v); return 2; }
    } else if (!strcmp(a, "--prompt-ids") && v) {
      if (nprompt == MAX_PROMPTS || (plen[nprompt] = parse_ids(argv[++i], &prompt[nprompt])) <= 0) {
        fprintf(stderr, "--prompt-ids '%s': a comma-separated list of token ids\n", v);
        return 2;
      }
      nprompt++;
    } else if (a[0] != '-' && !ckpt) ckpt = a;
    else {
      fprintf(stderr, "usage: generate CKPT [--tp N] [--pp M] --prompt-ids \"5,17,300\" [--prompt-ids ...] "
                      "[--max-new N] [--dump-logits FILE] [--dtype f32|f16|bf16] [--reference] [--microbatches G] "
                      "[--chunk T] [--follow] [--device N] [--temperature T] [--top-k K] [--top-p P] [--min-p P] "
                      "[--seed S] [--ignore-eos] [--timeout-ms MS]\n");
      return 2;
    }
  }
  if (!ckpt) { fprintf(stderr, "generate: no checkpoint given\n"); return 2; }
  if (reference) {
    char path[4096];
    snprintf(path, sizeof path, "%s/reference.json", ckpt);
    char* text = read_file(path);
    if (!text) { fprintf(stderr, "--reference: cannot read %s\n", path); return 2; }
    if (nprompt == 0) nprompt = json_lists(text, "\"prompts\"", prompt, plen, MAX_PROMPTS);
    nexpect = json_lists(text, "\"tokens\"", expect, elen, MAX_PROMPTS);
    free(text);
    if (nprompt <= 0 || nexpect <= 0) { fprintf(stderr, "--reference: %s has no prompts/tokens lists\n", path); return 2; }
  }
  if (nprompt == 0) { fprintf(stderr, "generate: give at least one --prompt-ids\n"); return 2; }

  tppp_group_params gp;
  tppp_group_params_init(&gp, sizeof gp);
  gp.tp_size = tp > 0 ? tp : 1; /* from_env: tp 1 with pp means world / pp */
  gp.pp_size = pp;
  gp.device = device; /* TPPP_DEVICE_CPU, or the GPU every rank computes on (they may share it) */
  if (timeout_ms > 0) gp.timeout_ms = timeout_ms;
  tppp_group_t g = NULL;
  CHECK(tppp_group_create_from_env(&gp, &g));
  tppp_group_info gi;
  gi.struct_size = sizeof gi;
  CHECK(tppp_group_get_info(g, &gi));
  rank = gi.rank;
  tppp_checkpoint_t c = NULL;
  CHECK(tppp_checkpoint_open(ckpt, &c));
  tppp_model_params mp;
  tppp_model_params_init(&mp, sizeof mp);
  mp.dtype = dtype;
  mp.follow = follow;
  tppp_model_t m = NULL;
  CHECK(tppp_model_create(g, c, &mp, &m));
  tppp_checkpoint_close(c);
  tppp_model_info info;
  info.struct_size = sizeof info;
  CHECK(tppp_model_get_info(m, &info));

  int32_t* out = calloc((size_t)nprompt * (size_t)(max_new > 0 ? max_new : 1), sizeof *out);
  int32_t* counts = calloc((size_t)nprompt, sizeof *counts);
  float* first = rank == 0 ? malloc(sizeof(float) * (size_t)nprompt * (size_t)info.vocab_size) : NULL;
  tppp_generate_params gen;
  tppp_generate_params_init(&gen, sizeof gen);
  gen.max_new = max_new;
  gen.on_token = on_token;
  gen.microbatches = mbs;
  gen.prefill_chunk = chunk;
  gen.sampling = &sp;
  gen.ignore_eos = ignore_eos;
  const double t0 = now_s();
  if (!follow || rank == 0)
    CHECK(tppp_model_generate(m, nprompt, (const int32_t* const*)prompt, plen, &gen, out, counts, first));
  if (follow && rank == 0) CHECK(tppp_model_stop(m));
  if (follow && rank != 0) CHECK(tppp_model_follow(m, -1)); /* until the driver's stop */
  const double secs = now_s() - t0;

  /* Each rank's busy and wall time, gathered for the driver's report. */
  tppp_model_stats st;
  st.struct_size = sizeof st;
  CHECK(tppp_model_get_stats(m, &st));
  double mine[2] = {st.busy_ms, st.wall_ms};
  double* all = malloc(sizeof(double) * 2 * (size_t)gi.world_size);
  CHECK(tppp_all_gather(g, TPPP_SCOPE_WORLD, mine, all, sizeof mine, TPPP_DTYPE_U8, NULL)); /* as bytes */
  int bad = 0;
  if (rank == 0) {
    long total = 0;
    for (int i = 0; i < nprompt; i++) {
      printf("tokens:");
      for (int k = 0; k < counts[i]; k++) printf(" %d", out[(size_t)i * (size_t)max_new + (size_t)k]);
      printf("\n");
      total += counts[i];
      if (reference && i < nexpect && sp.temperature == 0.f) {
        int n = counts[i] < elen[i] ? counts[i] : elen[i];
        int same = n == (max_new < elen[i] ? max_new : elen[i]);
        for (int k = 0; k < n && same; k++) same = out[(size_t)i * (size_t)max_new + (size_t)k] == expect[i][k];
        if (!same) bad = 1;
      }
    }
    printf("%s, %s, tp %d x pp %d: %ld tokens in %.3f s (%.1f tokens/s)\n", info.architecture, ckpt, gi.tp_size,
           gi.pp_size, total, secs, (double)total / secs);
    for (int s = 0; s < gi.pp_size; s++) {
      const double* r = all + 2 * (size_t)(s * gi.tp_size);
      printf("stage %d: busy %.1f ms, idle %.1f ms\n", s, r[0], r[1] - r[0]);
    }
    if (reference && sp.temperature != 0.f)
      printf("sampled (temperature %g, seed %llu): not compared with transformers' greedy tokens\n",
             (double)sp.temperature, (unsigned long long)sp.seed);
    else if (reference)
      printf("matches transformers' greedy tokens: %s\n", bad ? "NO" : "yes");
    if (dump) {
      FILE* f = fopen(dump, "wb");
      if (!f || fwrite(first, sizeof(float) * (size_t)info.vocab_size, (size_t)nprompt, f) != (size_t)nprompt) {
        fprintf(stderr, "--dump-logits: cannot write %s\n", dump);
        bad = 1;
      }
      if (f) fclose(f);
    }
  }
  tppp_model_destroy(m);
  tppp_group_destroy(g);
  free(out);
  free(counts);
  free(first);
  free(all);
  for (int i = 0; i < nprompt; i++) free(prompt[i]);
  for (int i = 0; i < nexpect; i++) free(expect[i]);
  return bad;
}
