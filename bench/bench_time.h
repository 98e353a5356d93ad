/* The C benchmarks' clock and median (bench_util.hpp is the C++ twin). */
#ifndef TPPP_BENCH_TIME_H
#define TPPP_BENCH_TIME_H
#include <stdlib.h>
#include <time.h>

static inline double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static inline int cmp_d(const void* a, const void* b) {
  const double x = *(const double*)a, y = *(const double*)b;
  return x < y ? -1 : x > y;
}

/* Sorts v[0..n) in place and returns its median (upper for even n). */
static inline double median(double* v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_d);
  return v[n / 2];
}
#endif
