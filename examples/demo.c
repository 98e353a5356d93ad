/* demo: the smallest TP x PP exchange a newcomer can read in one sitting.
 *
 *   tppp-run -n 4 -- tppp_demo        (TP=2 x PP=2 over UCX, on the CPU)
 *
 * Stage 0: each TP rank holds a partial activation; an all-reduce over the TP
 * group sums them (what a row-parallel layer does). Each TP rank then sends
 * only its 1/tp slice to the same TP rank of stage 1, which all-gathers the
 * slices over its TP group (docs/DESIGN.md section 6). Stage 1 checks the result
 * against the same sum computed locally in double precision. Runs unchanged
 * under mpirun -np 4 and torchrun --no-python --nproc-per-node 4.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "c_api.h"

#define HIDDEN 4096

#define CHECK(call)                                                          \
  do {                                                                       \
    tppp_status s_ = (call);                                                 \
    if (s_ != TPPP_OK) {                                                     \
      fprintf(stderr, "%s failed: %s: %s\n", #call, tppp_status_string(s_), \
              tppp_last_error());                                            \
      exit(1);                                                               \
    }                                                                        \
  } while (0)

/* The partial activation of global rank r (any rank can recompute it). */
static double partial(int r, int i) { return sin(0.001 * i * (r + 1)) + 0.25 * r; }

int main(void) {
  setvbuf(stdout, NULL, _IOLBF, 0); /* lines reach the launcher as they are printed */
  tppp_group_params p;
  CHECK(tppp_group_params_init(&p, sizeof p));
  p.pp_size = 2; /* tp = world / pp */
  p.timeout_ms = 30000;
  tppp_group_t g = NULL;
  CHECK(tppp_group_create_from_env(&p, &g));
  tppp_group_info info;
  info.struct_size = sizeof info;
  CHECK(tppp_group_get_info(g, &info));
  printf("rank %d/%d: tp %d/%d, pp %d/%d, prev stage rank %d, next stage rank %d\n", info.rank,
         info.world_size, info.tp_rank, info.tp_size, info.pp_rank, info.pp_size,
         info.prev_stage_rank, info.next_stage_rank);

  const int tp = info.tp_size;
  const int slice = HIDDEN / tp;
  float* x = malloc(sizeof(float) * HIDDEN); /* [HIDDEN] f32, host */
  int ok = 1;
  if (info.pp_rank == 0) {
    for (int i = 0; i < HIDDEN; i++) x[i] = (float)partial(info.rank, i);
    CHECK(tppp_all_reduce(g, TPPP_SCOPE_TP, x, x, HIDDEN, TPPP_DTYPE_F32, TPPP_OP_SUM, NULL));
    if (info.next_stage_rank >= 0)
      CHECK(tppp_send(g, TPPP_SCOPE_PP, info.pp_rank + 1, 0, x + info.tp_rank * slice,
                      sizeof(float) * slice, NULL));
  } else {
    for (int i = 0; i < HIDDEN; i++) x[i] = NAN; /* poison */
    float* mine = x + info.tp_rank * slice;
    CHECK(tppp_recv(g, TPPP_SCOPE_PP, info.pp_rank - 1, 0, mine, sizeof(float) * slice, NULL));
    CHECK(tppp_all_gather(g, TPPP_SCOPE_TP, mine, x, slice, TPPP_DTYPE_F32, NULL));
    /* relative error = max |x - ref| / max |ref|, ref in double */
    double max_err = 0, max_ref = 1e-30;
    for (int i = 0; i < HIDDEN; i++) {
      double ref = 0;
      for (int t = 0; t < tp; t++) ref += partial(t, i); /* stage 0 holds global ranks 0..tp-1 */
      double err = fabs(x[i] - ref);
      if (!(err <= max_err)) max_err = err; /* NaN counts as a failure */
      if (fabs(ref) > max_ref) max_ref = fabs(ref);
    }
    double max_rel = max_err / max_ref;
    ok = max_rel < 1e-6;
    printf("rank %d: received %d floats from rank %d, all-gathered %d over TP: max rel err %.2e %s\n",
           info.rank, slice, info.prev_stage_rank, HIDDEN, max_rel, ok ? "OK" : "MISMATCH");
  }
  CHECK(tppp_barrier(g, TPPP_SCOPE_WORLD));
  free(x);
  tppp_group_destroy(g);
  return ok ? 0 : 1;
}
