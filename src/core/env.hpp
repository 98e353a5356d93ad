// The environment settings libtppp reads: one registry (name, type, default,
// when it is read, meaning), like NCCL_PARAM. Every TPPP_* variable is in
// the table, so README's list is checked against one place
// (tests/test_env.cpp), and this file's .cpp is the only one that calls
// getenv (tests/check_tiers.py): settings through env_str/env_flag, the
// launchers' variables (RANK, ..., and TPPP_RUN_ID, which tppp-run sets)
// through process_env, the lookup read_launch_env takes. Tuning knobs are
// read once per process, at first use, and cached; addresses and ports are
// read each time they are used, like MASTER_ADDR and MASTER_PORT, and so is
// TPPP_UCX_STREAM_BACKOFF_NS, as each group is made (off any hot path, and
// a process's groups may differ).
#pragma once
#include <cstdint>
#include <string>

namespace tppp {

enum class Env : int {
  LogLevel = 0,      // TPPP_LOG_LEVEL
  AllowTf32,         // TPPP_ALLOW_TF32
  CublasLtAutotune,  // TPPP_CUBLASLT_AUTOTUNE
  UcxErrMode,        // TPPP_UCX_ERR_MODE
  CollShm,           // TPPP_COLL_SHM
  UcxStreamBackoffNs,  // TPPP_UCX_STREAM_BACKOFF_NS
  CudaGraphs,        // TPPP_CUDA_GRAPHS
  BootstrapAddr,     // TPPP_BOOTSTRAP_ADDR
  BootstrapPort,     // TPPP_BOOTSTRAP_PORT
  RunId,             // TPPP_RUN_ID
  CpuThreads,        // TPPP_CPU_THREADS
  CpuIsa,            // TPPP_CPU_ISA
  GroupSecret,       // TPPP_GROUP_SECRET
  Count
};

struct EnvSetting {
  Env id;
  const char* name;     // "TPPP_LOG_LEVEL"
  const char* type;     // "int", "bool", "string"
  const char* dflt;     // as documented ("" = unset)
  bool once;            // read once per process (else at each use)
  const char* meaning;  // one line, as README gives it
};

// The registry, in Env order (kCount entries).
const EnvSetting* env_settings();
const EnvSetting& env_setting(Env e);

// The raw value ("" when unset or empty): cached after the first read for
// once-settings, read now for the others.
std::string env_str(Env e);
// Set, non-empty and not "0".
bool env_flag(Env e);
// An "int" setting as a whole number in [lo, hi]: the registry's default
// when unset or empty; anything else throws INVALID_ARGUMENT naming it.
long env_int(Env e, long lo, long hi);

// A whole decimal number in [lo, hi] from the variable `name`'s value, or
// INVALID_ARGUMENT naming both (the settings and the launchers' variables).
long parse_env_int(const char* name, const char* value, long lo, long hi);

// The process environment for launcher variables (RANK, WORLD_SIZE,
// MASTER_ADDR, ...: read_launch_env takes it as its lookup); NULL if unset.
const char* process_env(const char* name);

}  // namespace tppp
