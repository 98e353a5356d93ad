/* pipeline_mlp: a TP=2 x PP=2 stack of MLP blocks, weights from a safetensors
 * checkpoint, run by the micro-batch scheduler over 4 processes:
 *
 *   build/tppp-run -n 4 -- build/pipeline_mlp tests/fixtures/data/qwen2
 *
 * Each rank binds only its own slices (TP shards of its stage's layers); stage
 * 0 feeds a batch, micro-batches stream through the stages, and the last stage
 * checks the result against the whole stack computed in one process (float64,
 * full weights read from the same checkpoint). Every rank prints its stage's
 * busy/idle time and measured bubble beside the theory (P-1)/(M+P-1), and rank
 * 0 writes a Chrome trace (open it in Perfetto). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "c_api.h"

#define CHECK(call)                                                                               \
  do {                                                                                            \
    tppp_status s_ = (call);                                                                      \
    if (s_ != TPPP_OK) {                                                                          \
      fprintf(stderr, "%s failed: %s: %s\n", #call, tppp_status_string(s_), tppp_last_error());  \
      exit(1);                                                                                    \
    }                                                                                             \
  } while (0)

enum { ROWS = 24, MICROBATCHES = 4, MAX_LAYERS = 64 };

static tppp_tensor host(void* data, int64_t r, int64_t c) {
  tppp_tensor t;
  memset(&t, 0, sizeof t);
  t.data = data;
  t.mem_kind = TPPP_MEM_HOST;
  t.device = -1;
  t.dtype = TPPP_DTYPE_F32;
  t.ndim = 2;
  t.shape[0] = r;
  t.shape[1] = c;
  return t;
}

/* The whole stack in one process, in double: the reference. */
static double* reference(tppp_checkpoint_t ck, const tppp_model_config* m, const float* x) {
  const int64_t H = m->hidden_size, I = m->intermediate_size;
  double* cur = malloc(sizeof(double) * ROWS * H);
  double* act = malloc(sizeof(double) * I);
  float* g = malloc(sizeof(float) * I * H);
  float* u = malloc(sizeof(float) * I * H);
  float* d = malloc(sizeof(float) * H * I);
  for (int64_t i = 0; i < ROWS * H; i++) cur[i] = x[i];
  for (int l = 0; l < m->num_layers; l++) {
    char name[128];
    tppp_tensor t = host(g, I, H);
    snprintf(name, sizeof name, "model.layers.%d.mlp.gate_proj.weight", l);
    CHECK(tppp_checkpoint_load(ck, name, NULL, &t));
    t.data = u;
    snprintf(name, sizeof name, "model.layers.%d.mlp.up_proj.weight", l);
    CHECK(tppp_checkpoint_load(ck, name, NULL, &t));
    t = host(d, H, I);
    snprintf(name, sizeof name, "model.layers.%d.mlp.down_proj.weight", l);
    CHECK(tppp_checkpoint_load(ck, name, NULL, &t));
    for (int r = 0; r < ROWS; r++) {
      for (int64_t i = 0; i < I; i++) {
        double a = 0, b = 0;
        for (int64_t j = 0; j < H; j++) {
          a += cur[r * H + j] * g[i * H + j];
          b += cur[r * H + j] * u[i * H + j];
        }
        act[i] = a / (1 + exp(-a)) * b;
      }
      for (int64_t c = 0; c < H; c++) {
        double s = 0;
        for (int64_t i = 0; i < I; i++) s += act[i] * d[c * I + i];
        cur[r * H + c] = s; /* row r of cur is not read again */
      }
    }
  }
  free(act);
  free(g);
  free(u);
  free(d);
  return cur;
}

int main(int argc, char** argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  const char* path = argc > 1 ? argv[1] : "tests/fixtures/data/qwen2";
  tppp_group_params gp;
  CHECK(tppp_group_params_init(&gp, sizeof gp));
  gp.pp_size = 2; /* tp = world / pp */
  gp.timeout_ms = 30000;
  tppp_group_t g;
  CHECK(tppp_group_create_from_env(&gp, &g));
  tppp_group_info info;
  info.struct_size = sizeof info;
  CHECK(tppp_group_get_info(g, &info));

  tppp_checkpoint_t ck;
  CHECK(tppp_checkpoint_open(path, &ck));
  tppp_model_config m;
  m.struct_size = sizeof m;
  CHECK(tppp_checkpoint_model_config(ck, &m));
  const int64_t H = m.hidden_size;
  /* This stage's layers: the loader's PP rule (even split, remainder first). */
  int first = 0;
  for (int s = 0; s < info.pp_rank; s++) first += (int)(m.num_layers / info.pp_size + (s < m.num_layers % info.pp_size));
  int count = (int)(m.num_layers / info.pp_size + (info.pp_rank < m.num_layers % info.pp_size));
  if (count > MAX_LAYERS) return 1;

  tppp_scheduler_params sp;
  CHECK(tppp_scheduler_params_init(&sp, sizeof sp));
  sp.num_microbatches = MICROBATCHES;
  sp.hidden = H;
  tppp_scheduler_t sched;
  CHECK(tppp_scheduler_create(g, &sp, &sched));
  tppp_layer_t layers[MAX_LAYERS];
  for (int l = 0; l < count; l++) {
    tppp_layer_params lp;
    CHECK(tppp_layer_params_init(&lp, sizeof lp));
    lp.kind = TPPP_LAYER_MLP;
    lp.in_features = H;
    lp.out_features = m.intermediate_size;
    CHECK(tppp_layer_create(g, &lp, &layers[l]));
    char prefix[96];
    snprintf(prefix, sizeof prefix, "model.layers.%d.mlp", first + l);
    CHECK(tppp_layer_bind_checkpoint(layers[l], ck, prefix)); /* only this rank's slices are read */
    CHECK(tppp_scheduler_add_layer(sched, layers[l]));
  }
  printf("rank %d (tp %d/%d, pp %d/%d): layers %d..%d\n", info.rank, info.tp_rank, info.tp_size, info.pp_rank,
         info.pp_size, first, first + count - 1);

  float* x = malloc(sizeof(float) * ROWS * H); /* [ROWS, H] f32: the batch, on stage 0 */
  float* y = malloc(sizeof(float) * ROWS * H); /* [ROWS, H] f32: the result, on the last stage */
  for (int64_t i = 0; i < ROWS * H; i++) {
    x[i] = (float)sin(0.37 * (double)i) * 0.5f + 0.1f;
    y[i] = NAN; /* poison */
  }
  tppp_tensor xt = host(x, ROWS, H), yt = host(y, ROWS, H);
  const int is_first = info.pp_rank == 0, is_last = info.pp_rank == info.pp_size - 1;
  CHECK(tppp_scheduler_run(sched, is_first ? &xt : NULL, is_last ? &yt : NULL));
  tppp_scheduler_stats st;
  st.struct_size = sizeof st;
  CHECK(tppp_scheduler_get_stats(sched, &st));
  printf("rank %d stage %d: %d micro-batches, wall %.3f ms, busy %.3f ms, idle %.3f ms, bubble %.2f (theory %.2f)\n",
         info.rank, st.stage, st.num_microbatches, st.wall_ms, st.busy_ms, st.idle_ms, st.bubble, st.theory_bubble);
  CHECK(tppp_scheduler_write_trace(sched, "pipeline_trace.json"));
  if (info.rank == 0) printf("rank 0: wrote pipeline_trace.json (open in Perfetto)\n");

  int ok = 1;
  if (is_last) {
    /* x was filled the same way on every rank: the reference starts from it */
    double* ref = reference(ck, &m, x);
    double err = 0, mag = 1e-30;
    for (int64_t i = 0; i < ROWS * H; i++) {
      double e = fabs(y[i] - ref[i]);
      if (!(e <= err)) err = e; /* NaN counts */
      if (fabs(ref[i]) > mag) mag = fabs(ref[i]);
    }
    ok = err / mag < 1e-5;
    printf("rank %d: output of %d layers over %d stages vs one process: max rel err %.2e %s\n", info.rank,
           (int)m.num_layers, info.pp_size, err / mag, ok ? "OK" : "MISMATCH");
    free(ref);
  }
  for (int l = 0; l < count; l++) tppp_layer_destroy(layers[l]);
  tppp_scheduler_destroy(sched);
  tppp_checkpoint_close(ck);
  free(x);
  free(y);
  tppp_group_destroy(g);
  return ok ? 0 : 1;
}
