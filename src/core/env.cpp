// The settings registry (see env.hpp): the only getenv in the library.
#include "core/env.hpp"

#include <cerrno>
#include <cstdlib>
#include <mutex>

#include "core/error.hpp"

namespace tppp {
namespace {

const EnvSetting kSettings[] = {
    {Env::LogLevel, "TPPP_LOG_LEVEL", "int", "1", true,
     "default log level without a callback: 0 errors, 1 warnings, 2 info, 3 debug"},
    {Env::AllowTf32, "TPPP_ALLOW_TF32", "bool", "0", true,
     "CUDA backend: f32 GEMMs may use TF32 tensor cores"},
    {Env::CublasLtAutotune, "TPPP_CUBLASLT_AUTOTUNE", "bool", "0", true,
     "CUDA backend: time the top 8 cuBLASLt heuristic candidates once per GEMM shape and keep the fastest"},
    {Env::UcxErrMode, "TPPP_UCX_ERR_MODE", "string", "", true,
     "`peer`: UCX error mode PEER on every endpoint (default: NONE between processes of one host, which are watched by pid)"},
    {Env::CollShm, "TPPP_COLL_SHM", "bool", "1", true,
     "`0`: all_reduce between processes of one host goes over UCX messages instead of shared memory (every rank must agree)"},
    {Env::UcxStreamBackoffNs, "TPPP_UCX_STREAM_BACKOFF_NS", "int", "150", false,
     "read as each group is made: a p2p receive from a peer of this host, on a rank that has sent nothing since its last receive finished (a one-way stream), first steps back this many ns (0 to 100000) when its wait finds it pending, so the sender fills UCX's shared-memory FIFO uncontended; `0`: poll at once"},
    {Env::CudaGraphs, "TPPP_CUDA_GRAPHS", "bool", "1", true,
     "`0`: the model runtime runs decode steps eagerly instead of replaying CUDA graphs per batch-size bucket"},
    {Env::BootstrapAddr, "TPPP_BOOTSTRAP_ADDR", "string", "", false,
     "this host's bootstrap address: what a unique id advertises and the bootstrap listens on, and (its interface) what UCX uses (default: the interface that routes to MASTER_ADDR or to the unique id's root; a root advertises the default route's interface, else the first that is up and not loopback, docker*, virbr*, veth*, ...)"},
    {Env::BootstrapPort, "TPPP_BOOTSTRAP_PORT", "int", "0", false,
     "the port rank 0 listens on for a unique id (default: any free port)"},
    {Env::RunId, "TPPP_RUN_ID", "string", "", false,
     "set by tppp-run: the job id that tppp_group_create_from_env turns into the group's magic"},
    {Env::CpuThreads, "TPPP_CPU_THREADS", "int", "0", true,
     "CPU backend: threads of the one pool its GEMMs, attention and row ops run on (`0`: the CPUs this process may use / the ranks its launcher started on this host)"},
    {Env::CpuIsa, "TPPP_CPU_ISA", "string", "", true,
     "CPU backend kernels: `auto` (default: AVX2+FMA+F16C when cpuid has them, else portable C++), `avx2`, or `generic` (the portable ones, for tests and comparison)"},
    {Env::GroupSecret, "TPPP_GROUP_SECRET", "string", "", false,
     "a secret every rank of a group shares (tppp-run makes one per job): rank 0 drops, and logs, a hello that does not prove it, so a process that only guessed the group's address and magic cannot join (default: none)"},
};
static_assert(sizeof kSettings / sizeof kSettings[0] == static_cast<size_t>(Env::Count),
              "one registry entry per Env value");

struct Cache {
  std::once_flag once[static_cast<size_t>(Env::Count)];
  std::string value[static_cast<size_t>(Env::Count)];
};
Cache& cache() {
  static Cache c;
  return c;
}

std::string read_now(const EnvSetting& s) {
  const char* v = std::getenv(s.name);
  return v ? std::string(v) : std::string();
}

}  // namespace

const EnvSetting* env_settings() { return kSettings; }

const EnvSetting& env_setting(Env e) { return kSettings[static_cast<size_t>(e)]; }

std::string env_str(Env e) {
  const EnvSetting& s = env_setting(e);
  if (!s.once) return read_now(s);
  Cache& c = cache();
  const size_t i = static_cast<size_t>(e);
  std::call_once(c.once[i], [&] { c.value[i] = read_now(s); });
  return c.value[i];
}

bool env_flag(Env e) {
  const std::string v = env_str(e);
  return !v.empty() && v != "0";
}

long parse_env_int(const char* name, const char* value, long lo, long hi) {
  char* end = nullptr;
  errno = 0;
  const long x = std::strtol(value, &end, 10);
  if (end == value || *end != '\0' || errno != 0 || x < lo || x > hi)
    fail(TPPP_ERR_INVALID_ARGUMENT, "environment variable %s='%s' is not an integer in [%ld, %ld]", name, value, lo, hi);
  return x;
}

long env_int(Env e, long lo, long hi) {
  const EnvSetting& s = env_setting(e);
  const std::string v = env_str(e);
  return parse_env_int(s.name, v.empty() ? s.dflt : v.c_str(), lo, hi);
}

const char* process_env(const char* name) { return std::getenv(name); }

}  // namespace tppp
