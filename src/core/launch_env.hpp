// Reads a launcher's environment (tppp-run/torchrun, Open MPI, Slurm) into
// plain data: world, rank, local rank and the bootstrap address. Pure: the
// environment comes in as a lookup function, so every launcher is tested
// without launching anything.
#pragma once
#include <cstdint>
#include <functional>
#include <string>

namespace tppp {

struct LaunchEnv {
  std::string launcher;  // "torchrun", "tppp-run", "openmpi", "slurm", "singleton" (no launcher: world 1)
  int world = 0, rank = 0, local_rank = -1;
  std::string master_addr;
  uint16_t port = 0;
  uint64_t magic = 0;  // same on every rank of one job, differs across jobs
};

using EnvLookup = std::function<const char*(const char*)>;

// No launcher variables at all: a singleton (world 1, rank 0). Throws
// INVALID_USAGE when half of a launcher's pair is set, INVALID_ARGUMENT
// naming the variable when one holds garbage.
LaunchEnv read_launch_env(const EnvLookup& env);

// How many ranks the launcher started on this host: LOCAL_WORLD_SIZE
// (torchrun, tppp-run), OMPI_COMM_WORLD_LOCAL_SIZE (mpirun), else 1. A
// value that is not a whole number in [1, 65535] throws INVALID_ARGUMENT.
int local_world_size(const EnvLookup& env);

}  // namespace tppp
