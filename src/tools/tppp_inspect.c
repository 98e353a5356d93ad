/* tppp-inspect: validate a safetensors checkpoint and show what each rank of
 * a TP x PP grid would read (like gguf-dump, for sharded HF checkpoints).
 *   tppp-inspect PATH [--tp N] [--pp M] [--quiet]
 * PATH is a .safetensors file or a checkpoint directory. Exit 0 when valid,
 * 1 with the error on stderr otherwise, 2 on bad usage. Uses only c_api.h. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "c_api.h"

static void shape_str(char* buf, size_t n, int32_t ndim, const int64_t* shape) {
  size_t o = 0;
  o += (size_t)snprintf(buf + o, n - o, "[");
  for (int32_t i = 0; i < ndim && i < TPPP_MAX_DIMS && o < n; i++)
    o += (size_t)snprintf(buf + o, n - o, "%s%" PRId64, i ? ", " : "", shape[i]);
  if (o < n) snprintf(buf + o, n - o, "]");
}

static const char* rule_name(int32_t r) {
  static const char* names[] = {"replicated", "column", "row", "kv-column", "vocab", "other-stage"};
  return r >= 0 && r <= 5 ? names[r] : "?";
}

static int fail(const char* what) {
  fprintf(stderr, "tppp-inspect: %s: %s\n", what, tppp_last_error());
  return 1;
}

int main(int argc, char** argv) {
  const char* path = NULL;
  int tp = 0, pp = 0, quiet = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--tp") && i + 1 < argc) tp = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--pp") && i + 1 < argc) pp = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--quiet")) quiet = 1;
    else if (argv[i][0] != '-' && !path) path = argv[i];
    else {
      fprintf(stderr, "usage: tppp-inspect PATH [--tp N] [--pp M] [--quiet]\n");
      return 2;
    }
  }
  if (!path || tp < 0 || pp < 0) {
    fprintf(stderr, "usage: tppp-inspect PATH [--tp N] [--pp M] [--quiet]\n");
    return 2;
  }
  tppp_checkpoint_t c = NULL;
  if (tppp_checkpoint_open(path, &c) != TPPP_OK) return fail(path);
  size_t n = 0;
  tppp_checkpoint_num_tensors(c, &n);
  tppp_model_config m;
  m.struct_size = sizeof m;
  tppp_checkpoint_model_config(c, &m);
  uint64_t total = 0;
  char sh[256];
  if (m.present)
    printf("config: hidden %" PRId64 ", heads %" PRId64 " (kv %" PRId64 ", dim %" PRId64 "), intermediate %" PRId64
           ", layers %" PRId64 ", vocab %" PRId64 ", tied embeddings %s\n",
           m.hidden_size, m.num_heads, m.num_kv_heads, m.head_dim, m.intermediate_size, m.num_layers, m.vocab_size,
           m.tie_word_embeddings ? "yes" : "no");
  for (size_t i = 0; i < n; i++) {
    tppp_tensor_info t;
    t.struct_size = sizeof t;
    if (tppp_checkpoint_tensor_info(c, i, &t) != TPPP_OK) return fail("tensor_info");
    total += t.nbytes;
    shape_str(sh, sizeof sh, t.ndim, t.shape);
    if (!quiet) printf("%-60s %-8s %-24s %12" PRIu64 "\n", t.name, t.dtype_name, sh, t.nbytes);
  }
  printf("%zu tensors, %" PRIu64 " bytes: valid\n", n, total);
  if (tp || pp) {
    if (!tp) tp = 1;
    if (!pp) pp = 1;
    for (int s = 0; s < pp; s++)
      for (int r = 0; r < tp; r++) {
        tppp_shard_params p;
        tppp_shard_params_init(&p, sizeof p);
        p.tp_size = tp;
        p.tp_rank = r;
        p.pp_size = pp;
        p.pp_rank = s;
        if (tppp_checkpoint_validate_grid(c, &p) != TPPP_OK) {
          tppp_checkpoint_close(c);
          return fail("grid");
        }
        uint64_t rank_bytes = 0;
        size_t count = 0;
        printf("rank %d (tp %d/%d, pp %d/%d):\n", s * tp + r, r, tp, s, pp);
        for (size_t i = 0; i < n; i++) {
          tppp_tensor_info t;
          t.struct_size = sizeof t;
          tppp_checkpoint_tensor_info(c, i, &t);
          tppp_slice sl;
          sl.struct_size = sizeof sl;
          if (tppp_checkpoint_shard_info(c, t.name, &p, &sl) != TPPP_OK) return fail(t.name);
          if (sl.rule == TPPP_SHARD_OTHER_STAGE) continue;
          rank_bytes += sl.read_bytes;
          count++;
          shape_str(sh, sizeof sh, sl.ndim, sl.shape);
          if (!quiet) printf("  %-58s %-11s %-24s %12" PRIu64 "\n", t.name, rule_name(sl.rule), sh, sl.read_bytes);
        }
        if (m.tie_word_embeddings) { /* lm_head read from embed_tokens on the last stage */
          size_t idx;
          tppp_slice sl;
          sl.struct_size = sizeof sl;
          if (tppp_checkpoint_find(c, "lm_head.weight", &idx) != TPPP_OK &&
              tppp_checkpoint_shard_info(c, "lm_head.weight", &p, &sl) == TPPP_OK &&
              sl.rule != TPPP_SHARD_OTHER_STAGE) {
            rank_bytes += sl.read_bytes;
            count++;
            shape_str(sh, sizeof sh, sl.ndim, sl.shape);
            if (!quiet)
              printf("  %-58s %-11s %-24s %12" PRIu64 "  (tied: reads %s)\n", "lm_head.weight", rule_name(sl.rule),
                     sh, sl.read_bytes, sl.source);
          }
        }
        printf("  %zu tensors, %" PRIu64 " bytes to read\n", count, rank_bytes);
      }
  }
  tppp_checkpoint_close(c);
  return 0;
}
