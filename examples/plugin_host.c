/* plugin_host: how a server embeds libtppp without linking it. It dlopens the
 * library with RTLD_NOW | RTLD_LOCAL, looks up one symbol, tppp_get_api,
 * refuses a library of another major version, and runs a TP+PP forward (a
 * TP=2 x PP=2 MLP stack, weights from a checkpoint, through the scheduler)
 * using only the function table.
 *   tppp-run -n 4 -- plugin_host /path/to/libtppp.so tests/fixtures/data/qwen2
 *   plugin_host /path/to/libtppp.so --want-major 99    (must refuse: exit 3) */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "c_api.h"

typedef const tppp_api* (*get_api_fn)(uint32_t, uint32_t);
static const tppp_api* T;

#define CHECK(call)                                                                                   \
  do {                                                                                                \
    tppp_status s_ = (call);                                                                          \
    if (s_ != TPPP_OK) {                                                                              \
      fprintf(stderr, "%s: %s: %s\n", #call, T->status_string(s_), T->last_error());                 \
      exit(1);                                                                                        \
    }                                                                                                 \
  } while (0)

static tppp_tensor host(float* d, int64_t r, int64_t c) {
  tppp_tensor t;
  memset(&t, 0, sizeof t);
  t.data = d;
  t.mem_kind = TPPP_MEM_HOST;
  t.device = -1;
  t.dtype = TPPP_DTYPE_F32;
  t.ndim = 2;
  t.shape[0] = r;
  t.shape[1] = c;
  return t;
}

int main(int argc, char** argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (argc < 3) {
    fprintf(stderr, "usage: plugin_host LIBTPPP.so CHECKPOINT | LIBTPPP.so --want-major N\n");
    return 2;
  }
  void* h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    fprintf(stderr, "dlopen: %s\n", dlerror());
    return 2;
  }
  get_api_fn get = (get_api_fn)dlsym(h, "tppp_get_api");
  if (!get) {
    fprintf(stderr, "no tppp_get_api in %s\n", argv[1]);
    return 2;
  }
  uint32_t major = TPPP_VERSION_MAJOR;
  if (!strcmp(argv[2], "--want-major") && argc > 3) major = (uint32_t)atoi(argv[3]);
  T = get(major, TPPP_VERSION_MINOR);
  if (!T) {
    printf("refused: the library does not serve API %u.%d\n", major, TPPP_VERSION_MINOR);
    return 3;
  }
  if (T->struct_size < sizeof(tppp_api)) {
    fprintf(stderr, "function table too small\n");
    return 2;
  }
  tppp_group_params gp;
  CHECK(T->group_params_init(&gp, sizeof gp));
  gp.pp_size = 2;
  tppp_group_t g;
  CHECK(T->group_create_from_env(&gp, &g));
  tppp_group_info info;
  info.struct_size = sizeof info;
  CHECK(T->group_get_info(g, &info));
  tppp_checkpoint_t ck;
  CHECK(T->checkpoint_open(argv[2], &ck));
  tppp_model_config m;
  m.struct_size = sizeof m;
  CHECK(T->checkpoint_model_config(ck, &m));
  tppp_scheduler_params sp;
  CHECK(T->scheduler_params_init(&sp, sizeof sp));
  sp.num_microbatches = 2;
  sp.hidden = m.hidden_size;
  tppp_scheduler_t s;
  CHECK(T->scheduler_create(g, &sp, &s));
  int first = 0;
  for (int k = 0; k < info.pp_rank; k++) first += (int)(m.num_layers / info.pp_size + (k < m.num_layers % info.pp_size));
  int count = (int)(m.num_layers / info.pp_size + (info.pp_rank < m.num_layers % info.pp_size));
  tppp_layer_t layers[16];
  for (int l = 0; l < count && l < 16; l++) {
    tppp_layer_params lp;
    CHECK(T->layer_params_init(&lp, sizeof lp));
    lp.kind = TPPP_LAYER_MLP;
    lp.in_features = m.hidden_size;
    lp.out_features = m.intermediate_size;
    CHECK(T->layer_create(g, &lp, &layers[l]));
    char prefix[64];
    snprintf(prefix, sizeof prefix, "model.layers.%d.mlp", first + l);
    CHECK(T->layer_bind_checkpoint(layers[l], ck, prefix));
    CHECK(T->scheduler_add_layer(s, layers[l]));
  }
  const int64_t rows = 6, H = m.hidden_size;
  float* x = malloc(sizeof(float) * (size_t)(rows * H));
  float* y = malloc(sizeof(float) * (size_t)(rows * H));
  for (int64_t i = 0; i < rows * H; i++) x[i] = 0.01f * (float)(i % 13);
  tppp_tensor xt = host(x, rows, H), yt = host(y, rows, H);
  CHECK(T->scheduler_run(s, info.pp_rank == 0 ? &xt : NULL, info.pp_rank == info.pp_size - 1 ? &yt : NULL));
  printf("rank %d: forward through the table done (library %u)\n", info.rank, T->version());
  for (int l = 0; l < count && l < 16; l++) T->layer_destroy(layers[l]);
  T->scheduler_destroy(s);
  T->checkpoint_close(ck);
  T->group_destroy(g);
  free(x);
  free(y);
  dlclose(h);
  return 0;
}
