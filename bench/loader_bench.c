/* loader_bench: this rank's load throughput from a page-cache-resident
 * checkpoint, beside read() of the same files into a pre-touched buffer.
 *   loader_bench DIR [tp rank]     prints "ours SECONDS BYTES", "arena ...",
 *                                  and (tp=1) "read SECONDS BYTES"
 * ours : tppp_checkpoint_load_rank into host buffers pre-touched before timing
 * ours1: the same with num_threads = 1
 * arena: the same into the library's own arena (allocation timed too)
 * read : read() of every shard front to back into one pre-touched buffer
 *   loader_bench --open FILE N     prints "open SECONDS" N times: tppp_checkpoint_open
 *                                  + close of one file (header parse and checks) */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "c_api.h"

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

typedef struct {
  char* base;
  size_t used, cap;
} Pool;

static void* pool_alloc(size_t bytes, const char* name, void* user) {
  (void)name;
  Pool* p = user;
  size_t a = (bytes + 63) / 64 * 64;
  if (p->used + a > p->cap) return NULL;
  void* r = p->base + p->used;
  p->used += a;
  return r;
}

#define CHECK(x)                                                                        \
  do {                                                                                  \
    if ((x) != TPPP_OK) {                                                               \
      fprintf(stderr, "%s: %s\n", #x, tppp_last_error());                               \
      return 1;                                                                         \
    }                                                                                   \
  } while (0)

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  if (strcmp(argv[1], "--open") == 0 && argc == 4) {
    for (int i = 0, n = atoi(argv[3]); i < n; i++) {
      double t0 = now();
      tppp_checkpoint_t c;
      CHECK(tppp_checkpoint_open(argv[2], &c));
      tppp_checkpoint_close(c);
      printf("open %.6f\n", now() - t0);
    }
    return 0;
  }
  const char* dir = argv[1];
  int tp = argc > 3 ? atoi(argv[2]) : 1, rank = argc > 3 ? atoi(argv[3]) : 0;
  tppp_checkpoint_t c;
  CHECK(tppp_checkpoint_open(dir, &c));
  tppp_shard_params sp;
  tppp_shard_params_init(&sp, sizeof sp);
  sp.tp_size = tp;
  sp.tp_rank = rank;
  /* ours, into pre-touched host buffers */
  size_t n = 0, cap = 0;
  tppp_checkpoint_num_tensors(c, &n);
  for (size_t i = 0; i < n; i++) {
    tppp_tensor_info ti;
    ti.struct_size = sizeof ti;
    tppp_checkpoint_tensor_info(c, i, &ti);
    cap += (ti.nbytes + 63) / 64 * 64;
  }
  Pool pool = {aligned_alloc(4096, (cap + 4095) / 4096 * 4096), 0, cap};
  memset(pool.base, 1, cap);
  tppp_load_params lp;
  tppp_load_params_init(&lp, sizeof lp);
  lp.alloc = pool_alloc;
  lp.alloc_user = &pool;
  tppp_weights_t w;
  double t0 = now();
  CHECK(tppp_checkpoint_load_rank(c, &sp, &lp, &w));
  double t1 = now();
  size_t bytes = 0, cnt = 0;
  tppp_weights_count(w, &cnt);
  for (size_t i = 0; i < cnt; i++) {
    const char* name;
    tppp_tensor t;
    tppp_weights_get(w, i, &name, &t);
    size_t b = 2;
    for (int d = 0; d < t.ndim; d++) b *= (size_t)t.shape[d];
    bytes += b;
  }
  printf("ours %.6f %zu\n", t1 - t0, bytes);
  tppp_weights_free(w);
  /* the same on one thread, like the read() baseline */
  pool.used = 0;
  lp.num_threads = 1;
  t0 = now();
  CHECK(tppp_checkpoint_load_rank(c, &sp, &lp, &w));
  t1 = now();
  printf("ours1 %.6f %zu\n", t1 - t0, bytes);
  tppp_weights_free(w);
  /* library arena */
  tppp_load_params_init(&lp, sizeof lp);
  t0 = now();
  CHECK(tppp_checkpoint_load_rank(c, &sp, &lp, &w));
  t1 = now();
  printf("arena %.6f %zu\n", t1 - t0, bytes);
  tppp_weights_free(w);
  tppp_checkpoint_close(c);
  if (tp == 1) { /* read() of every shard into the pre-touched buffer */
    DIR* d = opendir(dir);
    struct dirent* e;
    size_t total = 0;
    double tr = 0;
    while ((e = readdir(d))) {
      size_t l = strlen(e->d_name);
      if (l < 12 || strcmp(e->d_name + l - 12, ".safetensors")) continue;
      char path[4096];
      snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
      int fd = open(path, O_RDONLY);
      double a = now();
      for (;;) {
        size_t room = cap - total;
        ssize_t r = read(fd, pool.base + (total < cap ? total : 0), room > (64u << 20) ? (64u << 20) : room);
        if (r <= 0) break;
        total += (size_t)r;
      }
      tr += now() - a;
      close(fd);
    }
    closedir(d);
    printf("read %.6f %zu\n", tr, total);
  }
  free(pool.base);
  return 0;
}
