/* The Open MPI peer of comm_bench's "ar": MPI_Allreduce of f32 sums, same
 * sizes, iteration counts and reporting (the slower rank's average).
 * Run: mpirun -np N mpi_allreduce [max_bytes] */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  size_t max_bytes = argc > 1 ? strtoull(argv[1], NULL, 10) : (16u << 20);
  {  /* process start-up settles first (comm_bench.cpp does the same) */
    float a[2] = {1, 1}, b[2];
    for (int i = 0; i < 20000; i++) MPI_Allreduce(a, b, 2, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
  }
  for (size_t bytes = 8; bytes <= max_bytes; bytes *= 2) {
    int count = (int)(bytes / 4);
    float* x = malloc(bytes);
    float* y = malloc(bytes);
    for (int i = 0; i < count; i++) x[i] = 1.0f;
    int iters = bytes <= 4096 ? 20000 : bytes <= (64 << 10) ? 2000 : (bytes <= (1 << 20) ? 200 : 40);
    for (int i = 0; i < iters / 10 + 2; i++) MPI_Allreduce(x, y, count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = MPI_Wtime();
    for (int i = 0; i < iters; i++) MPI_Allreduce(x, y, count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    double avg = (MPI_Wtime() - t0) / iters, mx = 0;
    MPI_Reduce(&avg, &mx, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
    if (rank == 0) printf("ar %zu %.3f\n", bytes, mx * 1e6);
    int world;
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    if (y[0] != (float)world) {
      fprintf(stderr, "MPI_Allreduce result %g != %d\n", y[0], world);
      MPI_Abort(MPI_COMM_WORLD, 1);
    }
    free(x);
    free(y);
  }
  MPI_Finalize();
  return 0;
}
