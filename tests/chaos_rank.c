/* chaos_rank: one rank of a chaos run (scripts/chaos.py starts 2-4 of them,
 * then SIGKILLs or SIGSTOPs one at a random moment). It runs one phase's
 * work in a loop until a call fails, then prints what that call returned:
 *
 *   CHAOS rank=R phase=P op=OP status=TPPP_ERR_... t=MONOTONIC_SECONDS msg=...
 *
 * and tears everything down and exits 0 (a crash, a sanitizer report or a
 * hang is the driver's to see). "CHAOS-READY" is printed once the phase's
 * loop starts; a loop that runs 30 s without a failure prints status TPPP_OK.
 *   chaos_rank PHASE TIMEOUT_MS FIXTURES_DIR
 * PHASE: create coll p2p fill_drain decode_ring layer generate serve load.
 * Launcher variables (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT) as set by
 * the driver. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "c_api.h"

static int g_rank;
static const char* g_phase;
/* Buffers of the phases' calls: freed after tppp_group_destroy, as c_api.h
 * asks after a failed call (a stuck peer may still hold a transfer). */
static void* g_buf[2];

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* A failed call: report it and say so (the caller tears down and exits). */
static int failed(const char* op, tppp_status s) {
  double t = now_s();
  printf("CHAOS rank=%d phase=%s op=%s status=%s t=%.6f msg=%s\n", g_rank, g_phase, op, tppp_status_string(s), t,
         tppp_last_error());
  fflush(stdout);
  return 1;
}
#define TRY(op, call)                          \
  do {                                         \
    tppp_status s_ = (call);                   \
    if (s_ != TPPP_OK) return failed(op, s_);  \
  } while (0)

static void ready(void) {
  printf("CHAOS-READY rank=%d t=%.6f\n", g_rank, now_s());
  fflush(stdout);
}
static int still(double t0) { return now_s() - t0 < 30.0; }
static int ok_end(void) {
  printf("CHAOS rank=%d phase=%s op=none status=TPPP_OK t=%.6f msg=\n", g_rank, g_phase, now_s());
  fflush(stdout);
  return 0;
}

static tppp_tensor host2(void* data, int32_t dtype, int64_t r, int64_t c) {
  tppp_tensor t;
  memset(&t, 0, sizeof t);
  t.data = data;
  t.mem_kind = TPPP_MEM_HOST;
  t.device = -1;
  t.dtype = dtype;
  t.ndim = 2;
  t.shape[0] = r;
  t.shape[1] = c;
  return t;
}

/* The fixture checkpoint FIXTURES/sub. */
static tppp_status open_fixture(const char* fixtures, const char* sub, tppp_checkpoint_t* c) {
  char path[1024];
  snprintf(path, sizeof path, "%s/%s", fixtures, sub);
  return tppp_checkpoint_open(path, c);
}

static tppp_status make_group(int timeout_ms, int pp, tppp_group_t* g) {
  tppp_group_params p;
  tppp_group_params_init(&p, sizeof p);
  p.timeout_ms = timeout_ms;
  p.pp_size = pp; /* tp = world / pp */
  return tppp_group_create_from_env(&p, g);
}

static int world_of(tppp_group_t g) {
  tppp_group_info info;
  info.struct_size = sizeof info;
  tppp_group_get_info(g, &info);
  return info.world_size;
}

static int phase_create(int timeout_ms) {
  double t0 = now_s();
  ready();
  while (still(t0)) {
    tppp_group_t g = NULL;
    TRY("group_create", make_group(timeout_ms, 1, &g));
    tppp_status s = tppp_barrier(g, TPPP_SCOPE_WORLD);
    tppp_group_destroy(g);
    if (s != TPPP_OK) return failed("barrier", s);
  }
  return ok_end();
}

static int phase_coll(tppp_group_t g) {
  const int n = world_of(g);
  float* x = g_buf[0] = malloc(sizeof(float) << 20);
  float* y = g_buf[1] = malloc(sizeof(float) * ((size_t)n << 18));
  int rc = 0;
  double t0 = now_s();
  ready();
  for (unsigned k = 0; still(t0) && rc == 0; k++) {
    size_t count = (size_t)1 << (k % 19); /* 4 B .. 1 MiB */
    for (size_t i = 0; i < count; i++) x[i] = (float)(i % 7);
    tppp_status s = tppp_all_reduce(g, TPPP_SCOPE_WORLD, x, x, count, TPPP_DTYPE_F32, TPPP_OP_SUM, NULL);
    if (s != TPPP_OK) { rc = failed("all_reduce", s); break; }
    size_t ag = count > ((size_t)1 << 18) ? (size_t)1 << 18 : count;
    s = tppp_all_gather(g, TPPP_SCOPE_WORLD, x, y, ag, TPPP_DTYPE_F32, NULL);
    if (s != TPPP_OK) { rc = failed("all_gather", s); break; }
    s = tppp_broadcast(g, TPPP_SCOPE_WORLD, x, count, TPPP_DTYPE_F32, (int32_t)(k % (unsigned)n), NULL);
    if (s != TPPP_OK) { rc = failed("broadcast", s); break; }
    s = tppp_barrier(g, TPPP_SCOPE_WORLD);
    if (s != TPPP_OK) { rc = failed("barrier", s); break; }
  }
  return rc ? rc : ok_end();
}

static int phase_p2p(tppp_group_t g) {
  const int n = world_of(g);
  char* a = g_buf[0] = malloc((size_t)4 << 20);
  char* b = g_buf[1] = malloc((size_t)4 << 20);
  memset(a, 1, (size_t)4 << 20);
  int rc = 0;
  double t0 = now_s();
  ready();
  for (unsigned k = 0; still(t0) && rc == 0; k++) {
    size_t bytes = (size_t)1 << (k % 23); /* 1 B .. 4 MiB */
    tppp_request_t rs = NULL, rr = NULL;
    tppp_status s = tppp_irecv(g, TPPP_SCOPE_WORLD, (g_rank + n - 1) % n, (int32_t)(k & 0xffff), b, bytes, NULL, &rr);
    if (s == TPPP_OK)
      s = tppp_isend(g, TPPP_SCOPE_WORLD, (g_rank + 1) % n, (int32_t)(k & 0xffff), a, bytes, NULL, &rs);
    if (s == TPPP_OK) s = tppp_request_wait(rr);
    if (s == TPPP_OK) s = tppp_request_wait(rs);
    tppp_request_free(rr);
    tppp_request_free(rs);
    if (s != TPPP_OK) rc = failed("p2p", s);
  }
  return rc ? rc : ok_end();
}

static int32_t stage_scale(void* user, int32_t mb, int32_t step, const tppp_tensor* in, const tppp_tensor* out) {
  (void)user;
  (void)mb;
  (void)step;
  const float* x = (const float*)in->data;
  float* y = (float*)out->data;
  for (int64_t i = 0; i < in->shape[0] * in->shape[1]; i++) y[i] = x[i] * 0.5f + 1.0f;
  return 0;
}

static int phase_sched(tppp_group_t g, int policy) {
  const int n = world_of(g);
  enum { ROWS = 16, H = 256 };
  tppp_scheduler_params sp;
  tppp_scheduler_params_init(&sp, sizeof sp);
  sp.policy = policy;
  sp.num_microbatches = n;
  sp.steps = policy == TPPP_POLICY_DECODE_RING ? 8 : 1;
  sp.hidden = H;
  tppp_scheduler_t s = NULL;
  TRY("scheduler_create", tppp_scheduler_create(g, &sp, &s));
  tppp_scheduler_set_stage_fn(s, stage_scale, NULL);
  static float x[ROWS * H], y[ROWS * H];
  for (int i = 0; i < ROWS * H; i++) x[i] = (float)(i % 13);
  tppp_tensor xt = host2(x, TPPP_DTYPE_F32, ROWS, H), yt = host2(y, TPPP_DTYPE_F32, ROWS, H);
  int rc = 0;
  double t0 = now_s();
  ready();
  while (still(t0) && rc == 0) {
    tppp_status st = tppp_scheduler_run(s, g_rank == 0 ? &xt : NULL, g_rank == n - 1 ? &yt : NULL);
    if (st != TPPP_OK) rc = failed("scheduler_run", st);
  }
  tppp_scheduler_destroy(s);
  return rc ? rc : ok_end();
}

static int phase_layer(tppp_group_t g, const char* fixtures) {
  tppp_checkpoint_t c = NULL;
  TRY("checkpoint_open", open_fixture(fixtures, "qwen2", &c));
  tppp_model_config m;
  m.struct_size = sizeof m;
  tppp_checkpoint_model_config(c, &m);
  tppp_layer_params lp;
  tppp_layer_params_init(&lp, sizeof lp);
  lp.kind = TPPP_LAYER_MLP;
  lp.in_features = m.hidden_size;
  lp.out_features = m.intermediate_size;
  tppp_layer_t l = NULL;
  int rc = 0;
  tppp_status s = tppp_layer_create(g, &lp, &l);
  if (s == TPPP_OK) s = tppp_layer_bind_checkpoint(l, c, "model.layers.0.mlp");
  if (s != TPPP_OK) rc = failed("layer_setup", s);
  enum { ROWS = 8 };
  float* x = calloc((size_t)(ROWS * m.hidden_size), sizeof(float));
  float* y = calloc((size_t)(ROWS * m.hidden_size), sizeof(float));
  for (int64_t i = 0; i < ROWS * m.hidden_size; i++) x[i] = (float)sin((double)i);
  tppp_tensor xt = host2(x, TPPP_DTYPE_F32, ROWS, m.hidden_size), yt = host2(y, TPPP_DTYPE_F32, ROWS, m.hidden_size);
  double t0 = now_s();
  if (rc == 0) ready();
  while (rc == 0 && still(t0)) {
    s = tppp_layer_forward(l, &xt, &yt, NULL);
    if (s != TPPP_OK) rc = failed("layer_forward", s);
  }
  free(x);
  free(y);
  tppp_layer_destroy(l);
  tppp_checkpoint_close(c);
  return rc ? rc : ok_end();
}

/* The qwen2 fixture as a model over the group, or a report of what failed. */
static int open_model(tppp_group_t g, const char* fixtures, tppp_checkpoint_t* c, tppp_model_t* m) {
  TRY("checkpoint_open", open_fixture(fixtures, "models/qwen2", c));
  tppp_model_params mp;
  tppp_model_params_init(&mp, sizeof mp);
  tppp_status s = tppp_model_create(g, *c, &mp, m);
  if (s != TPPP_OK) {
    tppp_checkpoint_close(*c);
    return failed("model_create", s);
  }
  return 0;
}

static int phase_generate(tppp_group_t g, const char* fixtures) {
  tppp_checkpoint_t c = NULL;
  tppp_model_t m = NULL;
  if (open_model(g, fixtures, &c, &m)) return 1;
  tppp_status s;
  enum { NP = 4, LEN = 12, NEW = 8 };
  int32_t prompts[NP][LEN], lens[NP];
  const int32_t* pp[NP];
  for (int i = 0; i < NP; i++) {
    for (int j = 0; j < LEN; j++) prompts[i][j] = (i * 31 + j * 7) % 300;
    lens[i] = LEN - i;
    pp[i] = prompts[i];
  }
  tppp_generate_params gp;
  tppp_generate_params_init(&gp, sizeof gp);
  gp.max_new = NEW;
  int32_t out[NP * NEW], counts[NP];
  int rc = 0;
  double t0 = now_s();
  ready();
  while (rc == 0 && still(t0)) {
    s = tppp_model_generate(m, NP, pp, lens, &gp, out, counts, NULL);
    if (s != TPPP_OK) rc = failed("model_generate", s);
  }
  tppp_model_destroy(m);
  tppp_checkpoint_close(c);
  return rc ? rc : ok_end();
}

/* Steps in flight (every-rank mode, one stage per rank): two groups of
 * sequences take turns, two steps in flight; each wait must bring its
 * group's rows (a step's result is never lost silently: fewer rows with
 * TPPP_OK is reported as INTERNAL). Inputs do not depend on the results, so
 * every rank composes the same steps. */
static int phase_serve(tppp_group_t g, const char* fixtures) {
  tppp_checkpoint_t c = NULL;
  tppp_model_t m = NULL;
  if (open_model(g, fixtures, &c, &m)) return 1;
  tppp_status s;
  enum { G = 2, PER = 3 };
  int32_t len[G * PER] = {0}, tok[PER], pos[PER], seq[PER];
  tppp_sampling_params sp;
  tppp_sampling_params_init(&sp, sizeof sp);
  sp.temperature = 0.8f;
  sp.top_k = 20;
  const tppp_sampling_params* sps[PER] = {&sp, &sp, &sp};
  tppp_step_params stp;
  tppp_step_params_init(&stp, sizeof stp);
  stp.sampling = sps;
  int rc = 0, inflight = 0;
  double t0 = now_s();
  ready();
  for (int k = 0; rc == 0 && still(t0); k++) {
    const int gi = k % G;
    for (int j = 0; j < PER; j++) {
      const int q = gi * PER + j;
      if (len[q] >= 200) { /* its last step was waited: start it again */
        s = tppp_model_remove_seq(m, q);
        if (s != TPPP_OK) { rc = failed("model_remove_seq", s); break; }
        len[q] = 0;
      }
      tok[j] = (k * 7 + q * 13) % 300;
      pos[j] = len[q]++;
      seq[j] = q;
    }
    if (rc) break;
    sp.seed = (uint64_t)k;
    tppp_batch b = {PER, tok, pos, seq, NULL};
    int8_t want[PER] = {1, 1, 1};
    b.logits = want;
    s = tppp_model_submit(m, &b, &stp, NULL);
    if (s != TPPP_OK) { rc = failed("model_submit", s); break; }
    if (++inflight == G) {
      tppp_step_result r;
      r.struct_size = sizeof r;
      s = tppp_model_wait(m, &r);
      if (s != TPPP_OK) { rc = failed("model_wait", s); break; }
      if (r.n_out != PER) { rc = failed("model_wait (rows lost)", TPPP_ERR_INTERNAL); break; }
      inflight--;
    }
  }
  tppp_model_destroy(m);
  tppp_checkpoint_close(c);
  return rc ? rc : ok_end();
}

static int phase_load(tppp_group_t g, const char* fixtures) {
  tppp_checkpoint_t c = NULL;
  TRY("checkpoint_open", open_fixture(fixtures, "models/qwen2", &c));
  tppp_shard_params sh;
  tppp_shard_params_init(&sh, sizeof sh);
  tppp_status s = tppp_shard_params_from_group(g, &sh);
  int rc = s == TPPP_OK ? 0 : failed("shard_params", s);
  double t0 = now_s();
  if (rc == 0) ready();
  while (rc == 0 && still(t0)) {
    tppp_weights_t w = NULL;
    s = tppp_checkpoint_load_rank(c, &sh, NULL, &w);
    tppp_weights_free(w);
    if (s != TPPP_OK) {
      rc = failed("checkpoint_load_rank", s);
      break;
    }
    s = tppp_barrier(g, TPPP_SCOPE_WORLD);  /* the loaded ranks meet */
    if (s != TPPP_OK) rc = failed("barrier", s);
  }
  tppp_checkpoint_close(c);
  return rc ? rc : ok_end();
}

int main(int argc, char** argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: chaos_rank PHASE TIMEOUT_MS FIXTURES_DIR\n");
    return 2;
  }
  setvbuf(stdout, NULL, _IOLBF, 0);
  g_phase = argv[1];
  const int timeout_ms = atoi(argv[2]);
  const char* fixtures = argv[3];
  const char* r = getenv("RANK");
  g_rank = r ? atoi(r) : 0;
  if (!strcmp(g_phase, "create")) {
    phase_create(timeout_ms);
    return 0;
  }
  const char* ws = getenv("WORLD_SIZE");
  const int world = ws ? atoi(ws) : 1;
  /* The pipeline phases run one stage per rank; layer and load split by TP. */
  int pp = 1;
  if (!strcmp(g_phase, "fill_drain") || !strcmp(g_phase, "decode_ring") || !strcmp(g_phase, "generate") ||
      !strcmp(g_phase, "serve"))
    pp = world;
  if (!strcmp(g_phase, "load") && world % 2) pp = world; /* the fixture's sizes split by 2 and 4, not 3 */
  tppp_group_t g = NULL;
  tppp_status s = make_group(timeout_ms, pp, &g);
  if (s != TPPP_OK) {
    failed("group_create", s);
    return 0;
  }
  if (!strcmp(g_phase, "coll")) phase_coll(g);
  else if (!strcmp(g_phase, "p2p")) phase_p2p(g);
  else if (!strcmp(g_phase, "fill_drain")) phase_sched(g, TPPP_POLICY_FILL_DRAIN);
  else if (!strcmp(g_phase, "decode_ring")) phase_sched(g, TPPP_POLICY_DECODE_RING);
  else if (!strcmp(g_phase, "layer")) phase_layer(g, fixtures);
  else if (!strcmp(g_phase, "generate")) phase_generate(g, fixtures);
  else if (!strcmp(g_phase, "serve")) phase_serve(g, fixtures);
  else if (!strcmp(g_phase, "load")) phase_load(g, fixtures);
  else {
    fprintf(stderr, "chaos_rank: unknown phase %s\n", g_phase);
    tppp_group_destroy(g);
    return 2;
  }
  tppp_group_destroy(g);
  free(g_buf[0]);
  free(g_buf[1]);
  return 0;
}
