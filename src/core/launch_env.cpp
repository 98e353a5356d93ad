// Launcher environments, in order of precedence:
//   RANK + WORLD_SIZE (+ LOCAL_RANK, MASTER_ADDR, MASTER_PORT): torchrun and
//     tppp-run. Under torchrun (TORCHELASTIC_RUN_ID set) the agent's TCPStore
//     owns MASTER_PORT, so our root listens on MASTER_PORT + 1.
//   OMPI_COMM_WORLD_RANK/SIZE/LOCAL_RANK: mpirun (Open MPI).
//   SLURM_PROCID/NTASKS/LOCALID: srun.
//   none of them: a singleton (world 1, rank 0), like an MPI program started
//     without mpirun, so a program runs unchanged with and without a launcher.
// MPI and Slurm set no rendezvous address: MASTER_ADDR/MASTER_PORT are used
// when exported; otherwise, on a single node, 127.0.0.1 and a port derived
// from the job id. TPPP_BOOTSTRAP_PORT overrides the port in every case.
#include "core/launch_env.hpp"

#include <cstdlib>

#include "core/bootstrap.hpp"
#include "core/env.hpp"
#include "core/error.hpp"

namespace tppp {
namespace {

bool has(const EnvLookup& env, const char* k) {
  const char* v = env(k);
  return v && *v;
}

std::string get(const EnvLookup& env, const char* k) {
  const char* v = env(k);
  return v ? std::string(v) : std::string();
}

long parse_int(const EnvLookup& env, const char* k, long lo, long hi) {
  const char* v = env(k);
  if (!v || !*v) fail(TPPP_ERR_INVALID_ARGUMENT, "environment variable %s is not set", k);
  return parse_env_int(k, v, lo, hi);
}

uint16_t port_from_job(const std::string& job) {
  return static_cast<uint16_t>(20000 + fnv1a64(job.data(), job.size()) % 20000);
}

}  // namespace

LaunchEnv read_launch_env(const EnvLookup& env) {
  LaunchEnv e;
  std::string job;
  bool single_node = false;
  if (has(env, "RANK") && has(env, "WORLD_SIZE")) {
    e.launcher = has(env, "TORCHELASTIC_RUN_ID") ? "torchrun" : (has(env, "TPPP_RUN_ID") ? "tppp-run" : "torchrun");
    e.world = static_cast<int>(parse_int(env, "WORLD_SIZE", 1, 65535));
    e.rank = static_cast<int>(parse_int(env, "RANK", 0, 65534));
    if (has(env, "LOCAL_RANK")) e.local_rank = static_cast<int>(parse_int(env, "LOCAL_RANK", 0, 65534));
    job = get(env, "TORCHELASTIC_RUN_ID") + get(env, "TPPP_RUN_ID");
    single_node = e.world == 1;
  } else if (has(env, "OMPI_COMM_WORLD_RANK") && has(env, "OMPI_COMM_WORLD_SIZE")) {
    e.launcher = "openmpi";
    e.world = static_cast<int>(parse_int(env, "OMPI_COMM_WORLD_SIZE", 1, 65535));
    e.rank = static_cast<int>(parse_int(env, "OMPI_COMM_WORLD_RANK", 0, 65534));
    if (has(env, "OMPI_COMM_WORLD_LOCAL_RANK"))
      e.local_rank = static_cast<int>(parse_int(env, "OMPI_COMM_WORLD_LOCAL_RANK", 0, 65534));
    if (has(env, "OMPI_COMM_WORLD_LOCAL_SIZE"))
      single_node = parse_int(env, "OMPI_COMM_WORLD_LOCAL_SIZE", 1, 65535) == e.world;
    job = "ompi:" + get(env, "OMPI_MCA_ess_base_jobid") + ":" + get(env, "PMIX_NAMESPACE") + ":" +
          get(env, "OMPI_MCA_orte_hnp_uri");
  } else if (has(env, "SLURM_PROCID") && has(env, "SLURM_NTASKS")) {
    e.launcher = "slurm";
    e.world = static_cast<int>(parse_int(env, "SLURM_NTASKS", 1, 65535));
    e.rank = static_cast<int>(parse_int(env, "SLURM_PROCID", 0, 65534));
    if (has(env, "SLURM_LOCALID")) e.local_rank = static_cast<int>(parse_int(env, "SLURM_LOCALID", 0, 65534));
    const char* nn = has(env, "SLURM_STEP_NUM_NODES") ? "SLURM_STEP_NUM_NODES" : "SLURM_NNODES";
    if (has(env, nn)) single_node = parse_int(env, nn, 1, 1 << 20) == 1;
    job = "slurm:" + get(env, "SLURM_JOB_ID") + "." + get(env, "SLURM_STEP_ID");
  } else {
    // Half a launcher's pair is a mistake worth naming; none at all is a singleton.
    for (const char* k : {"RANK", "WORLD_SIZE", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "SLURM_PROCID",
                          "SLURM_NTASKS"})
      if (has(env, k))
        fail(TPPP_ERR_INVALID_USAGE,
             "incomplete launcher environment: %s is set but its partner is not (expected RANK and WORLD_SIZE "
             "(torchrun, tppp-run), OMPI_COMM_WORLD_RANK/SIZE (mpirun) or SLURM_PROCID/NTASKS (srun))",
             k);
    e.launcher = "singleton";
    e.world = 1;
    e.rank = 0;
    e.local_rank = 0;
    single_node = true;
    job = "singleton";
  }
  if (e.rank >= e.world)
    fail(TPPP_ERR_INVALID_ARGUMENT, "%s environment: rank %d is not below world size %d", e.launcher.c_str(), e.rank,
         e.world);

  if (has(env, "MASTER_ADDR")) {
    e.master_addr = get(env, "MASTER_ADDR");
  } else if (single_node) {
    e.master_addr = "127.0.0.1";
  } else {
    fail(TPPP_ERR_INVALID_USAGE,
         "%s environment: MASTER_ADDR is not set and the job spans several nodes; export MASTER_ADDR (rank 0's "
         "host) and MASTER_PORT to every rank",
         e.launcher.c_str());
  }
  if (has(env, "TPPP_BOOTSTRAP_PORT")) {
    e.port = static_cast<uint16_t>(parse_int(env, "TPPP_BOOTSTRAP_PORT", 1, 65535));
  } else if (has(env, "MASTER_PORT")) {
    long p = parse_int(env, "MASTER_PORT", 1, 65535);
    if (e.launcher == "torchrun" && has(env, "TORCHELASTIC_RUN_ID")) p = p == 65535 ? 65534 : p + 1;
    e.port = static_cast<uint16_t>(p);
  } else if (e.launcher == "openmpi" || e.launcher == "slurm") {
    e.port = port_from_job(job);
  } else if (e.launcher == "singleton") {
    e.port = 0;  // any free port: no other rank joins
  } else {
    fail(TPPP_ERR_INVALID_ARGUMENT, "%s environment: MASTER_PORT is not set", e.launcher.c_str());
  }
  std::string key = "tppp-env|" + e.launcher + "|" + job + "|" + e.master_addr + "|" + std::to_string(e.port) + "|" +
                    std::to_string(e.world);
  e.magic = fnv1a64(key.data(), key.size());
  return e;
}

int local_world_size(const EnvLookup& env) {
  for (const char* k : {"LOCAL_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_SIZE"})
    if (has(env, k)) return static_cast<int>(parse_int(env, k, 1, 65535));
  return 1;
}

}  // namespace tppp
