/* pipeline_bench: the scheduler against the pipeline model, P stages (one
 * process each, tppp-run -n P), a stage function of fixed cost (it sleeps
 * T_STAGE_US, then copies the activation), activations [16 rows, 1024] f32
 * per micro-batch. Prints, on rank 0:
 *   p2p P BYTES US                      one activation hop, measured (half round trip)
 *   fill P M STEP_MS MODEL_MS T_STAGE   step time (slowest stage's wall, median of 5)
 *                                        vs (M+P-1)*t_stage + (P-1)*t_p2p
 *   ring P M UTIL STEADY FINITE         decode ring (RING_STEPS steps): mean stage busy/wall vs the
 *                                        steady state min(M,P)/P and vs this finite run's ideal,
 *                                        S*M / (S*max(M,P) + min(M,P) - 1 + P - min(M,P)), which
 *                                        counts the fill and drain of S steps */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "c_api.h"

#define CHECK(call)                                                                          \
  do {                                                                                       \
    tppp_status s_ = (call);                                                                 \
    if (s_ != TPPP_OK) {                                                                     \
      fprintf(stderr, "%s: %s: %s\n", #call, tppp_status_string(s_), tppp_last_error());    \
      exit(1);                                                                               \
    }                                                                                        \
  } while (0)

enum { ROWS_PER_MB = 16, HIDDEN = 1024, T_STAGE_US = 2000, REPS = 5, RING_STEPS = 16 };

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e3 + t.tv_nsec * 1e-6;
}

static int32_t stage(void* user, int32_t mb, int32_t step, const tppp_tensor* in, const tppp_tensor* out) {
  (void)user;
  (void)mb;
  (void)step;
  struct timespec d = {0, T_STAGE_US * 1000L};
  nanosleep(&d, NULL);
  memcpy(out->data, in->data, sizeof(float) * (size_t)(in->shape[0] * in->shape[1]));
  return 0;
}

static int cmp(const void* a, const void* b) {
  double x = *(const double*)a, y = *(const double*)b;
  return x < y ? -1 : x > y;
}

static tppp_tensor host(void* d, int64_t r) {
  tppp_tensor t;
  memset(&t, 0, sizeof t);
  t.data = d;
  t.mem_kind = TPPP_MEM_HOST;
  t.device = -1;
  t.dtype = TPPP_DTYPE_F32;
  t.ndim = 2;
  t.shape[0] = r;
  t.shape[1] = HIDDEN;
  return t;
}

/* max over the world of a positive double (bit patterns order like int64) */
static double world_max(tppp_group_t g, double v) {
  double r = v;
  CHECK(tppp_all_reduce(g, TPPP_SCOPE_WORLD, &v, &r, 1, TPPP_DTYPE_I64, TPPP_OP_MAX, NULL));
  return r;
}

int main(void) {
  tppp_group_params gp;
  CHECK(tppp_group_params_init(&gp, sizeof gp));
  gp.timeout_ms = 120000;
  tppp_group_t g;
  const char* ws = getenv("WORLD_SIZE");
  gp.pp_size = ws ? atoi(ws) : 1;
  CHECK(tppp_group_create_from_env(&gp, &g));
  tppp_group_info info;
  info.struct_size = sizeof info;
  CHECK(tppp_group_get_info(g, &info));
  const int P = info.pp_size, me = info.pp_rank;
  /* one hop: ping-pong of an activation between stages 0 and 1 */
  const size_t bytes = sizeof(float) * ROWS_PER_MB * HIDDEN;
  char* buf = malloc(bytes);
  memset(buf, 1, bytes);
  double hop = 0;
  if (P > 1) {
    const int iters = 200;
    CHECK(tppp_barrier(g, TPPP_SCOPE_WORLD));
    double t0 = now_ms();
    for (int i = 0; i < iters && me < 2; i++) {
      if (me == 0) {
        CHECK(tppp_send(g, TPPP_SCOPE_PP, 1, 9, buf, bytes, NULL));
        CHECK(tppp_recv(g, TPPP_SCOPE_PP, 1, 9, buf, bytes, NULL));
      } else {
        CHECK(tppp_recv(g, TPPP_SCOPE_PP, 0, 9, buf, bytes, NULL));
        CHECK(tppp_send(g, TPPP_SCOPE_PP, 0, 9, buf, bytes, NULL));
      }
    }
    hop = (now_ms() - t0) / iters / 2;
    CHECK(tppp_broadcast(g, TPPP_SCOPE_WORLD, &hop, 1, TPPP_DTYPE_I64, 0, NULL));
    if (info.rank == 0) printf("p2p %d %zu %.1f\n", P, bytes, hop * 1000);
  }
  const int Ms[] = {1, 2, 4, 8, 16};
  for (int pol = 0; pol < 2; pol++) {
    for (size_t k = 0; k < sizeof Ms / sizeof Ms[0]; k++) {
      const int M = Ms[k];
      tppp_scheduler_params sp;
      CHECK(tppp_scheduler_params_init(&sp, sizeof sp));
      sp.policy = pol ? TPPP_POLICY_DECODE_RING : TPPP_POLICY_FILL_DRAIN;
      sp.num_microbatches = M;
      sp.steps = pol ? RING_STEPS : 1;
      sp.hidden = HIDDEN;
      tppp_scheduler_t s;
      CHECK(tppp_scheduler_create(g, &sp, &s));
      CHECK(tppp_scheduler_set_stage_fn(s, stage, NULL));
      const int64_t rows = (int64_t)M * ROWS_PER_MB;
      float* x = calloc((size_t)(rows * HIDDEN), sizeof(float));
      float* y = calloc((size_t)(rows * HIDDEN), sizeof(float));
      tppp_tensor xt = host(x, rows), yt = host(y, rows);
      double walls[REPS], util[REPS], tstage = 0;
      for (int r = 0; r < REPS; r++) {
        CHECK(tppp_barrier(g, TPPP_SCOPE_WORLD));
        CHECK(tppp_scheduler_run(s, me == 0 ? &xt : NULL, me == P - 1 ? &yt : NULL));
        tppp_scheduler_stats st;
        st.struct_size = sizeof st;
        CHECK(tppp_scheduler_get_stats(s, &st));
        walls[r] = world_max(g, st.wall_ms);
        double u = st.busy_ms / st.wall_ms, sum = 0;
        /* mean utilisation: gather every stage's value */
        double* all = malloc(sizeof(double) * (size_t)info.world_size);
        CHECK(tppp_all_gather(g, TPPP_SCOPE_WORLD, &u, all, 1, TPPP_DTYPE_I64, NULL));
        for (int i = 0; i < info.world_size; i++) sum += all[i];
        free(all);
        util[r] = sum / info.world_size;
        tstage += st.busy_ms / (M * sp.steps);
      }
      tstage = world_max(g, tstage / REPS);
      qsort(walls, REPS, sizeof(double), cmp);
      qsort(util, REPS, sizeof(double), cmp);
      if (info.rank == 0) {
        if (!pol)
          printf("fill %d %d %.3f %.3f %.3f\n", P, M, walls[REPS / 2], (M + P - 1) * tstage + (P - 1) * hop, tstage);
        else
        {
          const double S = RING_STEPS, mn = M < P ? M : P, mx = M < P ? P : M;
          printf("ring %d %d %.3f %.3f %.3f\n", P, M, util[REPS / 2], mn / P, S * M / (S * mx + P - 1));
        }
        fflush(stdout);
      }
      free(x);
      free(y);
      tppp_scheduler_destroy(s);
    }
  }
  free(buf);
  tppp_group_destroy(g);
  return 0;
}
