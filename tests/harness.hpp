// Test harness: run a function as N real processes (fork, one rank each),
// deterministic random data, and a float64 reference check.
#pragma once
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <string>
#include <thread>
#include <vector>

#include "c_api.h"
#include "core/bootstrap.hpp"
#include "core/dtype.hpp"
#include "core/socket.hpp"

namespace th {

// Children print their failures to stderr and exit non-zero; the parent
// collects exit codes. A rank still running after timeout_s is killed (code
// -1). fn gets (rank, unique id made by the parent before fork).
//
// Across simulated hosts (scripts/multihost.sh sets TPPP_HOST_INDEX and
// TPPP_HOSTS; TPPP_TEST_PLACEMENT=block|cyclic asks for it), every host runs
// the same test binary: call k makes its group at MASTER_ADDR, port
// MASTER_PORT + k, with a magic from k, host 0 holding the root's listener,
// and each host forks only the ranks the placement gives it (block: rank r
// on host r * H / n; cyclic: on host r % H). The others count as passed
// here: their own host reports them.
inline std::vector<int> run_ranks(int n, double timeout_s, const std::function<int(int, const tppp_unique_id&)>& fn) {
  static int calls = 0;
  calls++;
  tppp_unique_id id;
  std::memset(&id, 0, sizeof id);
  std::vector<bool> here(static_cast<size_t>(n), true);
  const char* host = std::getenv("TPPP_HOST_INDEX");
  const char* place = std::getenv("TPPP_TEST_PLACEMENT");
  if (host && place && std::getenv("TPPP_HOSTS") && std::getenv("MASTER_ADDR") && std::getenv("MASTER_PORT")) {
    const int h = std::atoi(host), hosts = std::atoi(std::getenv("TPPP_HOSTS"));
    for (int r = 0; r < n; r++)
      here[static_cast<size_t>(r)] = (std::string(place) == "cyclic" ? r % hosts : r * hosts / n) == h;
    const auto port = static_cast<uint16_t>(std::atoi(std::getenv("MASTER_PORT")) + calls);
    try {
      tppp::make_unique_id_at(tppp::resolve_ipv4(std::getenv("MASTER_ADDR")), port,
                              0x7470707465737400ull ^ (static_cast<uint64_t>(port) << 20) ^ static_cast<uint64_t>(calls),
                              here[0], &id);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "multihost unique id: %s\n", e.what());
      return std::vector<int>(static_cast<size_t>(n), -2);
    }
  } else if (tppp_get_unique_id(&id) != TPPP_OK) {
    std::fprintf(stderr, "get_unique_id: %s\n", tppp_last_error());
    return std::vector<int>(static_cast<size_t>(n), -2);
  }
  std::fflush(nullptr);
  std::vector<pid_t> pids;
  std::vector<int> codes(static_cast<size_t>(n), -1);
  for (int r = 0; r < n; r++) {
    if (!here[static_cast<size_t>(r)]) {
      pids.push_back(-1);
      codes[static_cast<size_t>(r)] = 0;
      continue;
    }
    pid_t pid = fork();
    if (pid == 0) {
      if (r != 0) tppp::forget_unique_id(id);
      int code = 1;
      try {
        code = fn(r, id);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "rank %d: exception %s\n", r, e.what());
      }
      std::fflush(nullptr);
      _exit(code);
    }
    pids.push_back(pid);
  }
  tppp::forget_unique_id(id);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  size_t left = 0;
  for (pid_t p : pids) left += p > 0;
  while (left > 0) {
    int st;
    pid_t p = waitpid(-1, &st, WNOHANG);
    if (p > 0) {
      for (size_t i = 0; i < pids.size(); i++)
        if (pids[i] == p) {
          codes[i] = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
          pids[i] = -1;
          left--;
        }
      continue;
    }
    if (std::chrono::steady_clock::now() > deadline) {
      for (size_t i = 0; i < pids.size(); i++)
        if (pids[i] > 0) {
          std::fprintf(stderr, "rank %zu still running after %.0f s: killed\n", i, timeout_s);
          kill(pids[i], SIGKILL);
          waitpid(pids[i], nullptr, 0);
          pids[i] = -1;
          left--;
        }
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return codes;
}

inline bool all_zero(const std::vector<int>& v) {
  for (int c : v)
    if (c != 0) return false;
  return true;
}

inline std::string codes_str(const std::vector<int>& v) {
  std::string s;
  for (int c : v) s += std::to_string(c) + " ";
  return s;
}

// Prints the failure in a child and returns 1.
#define RANK_CHECK(cond, ...)                                           \
  do {                                                                  \
    if (!(cond)) {                                                      \
      std::fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond); \
      std::fprintf(stderr, __VA_ARGS__);                                \
      std::fprintf(stderr, "\n");                                       \
      return 1;                                                         \
    }                                                                   \
  } while (0)

#define RANK_OK(call)                                                                          \
  do {                                                                                         \
    tppp_status s_ = (call);                                                                   \
    RANK_CHECK(s_ == TPPP_OK, "%s -> %s: %s", #call, tppp_status_string(s_), tppp_last_error()); \
  } while (0)

inline uint64_t splitmix(uint64_t& s) {
  uint64_t z = (s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// Element i of rank r's random data for case k, as the value the dtype holds
// (so the float64 reference sums exactly what was sent). Never zero-filled.
inline double value(int32_t dtype, uint64_t k, int r, size_t i) {
  uint64_t s = (k * 1000003ull + static_cast<uint64_t>(r)) * 0x100000001b3ull + i;
  double u = static_cast<double>(splitmix(s) >> 11) * (1.0 / 9007199254740992.0);  // [0,1)
  switch (dtype) {
    case TPPP_DTYPE_F32: return static_cast<float>(u * 2 - 1);
    case TPPP_DTYPE_F16: return tppp::f16_to_f32(tppp::f32_to_f16(static_cast<float>(u * 2 - 1)));
    case TPPP_DTYPE_BF16: return tppp::bf16_to_f32(tppp::f32_to_bf16(static_cast<float>(u * 2 - 1)));
    case TPPP_DTYPE_I32: return std::floor(u * 2000001) - 1000000;
    case TPPP_DTYPE_I64: return std::floor(u * 2000001) - 1000000;
    case TPPP_DTYPE_I8: return std::floor(u * 256) - 128;
    default: return std::floor(u * 256);  // U8 and the f8 formats as raw bytes
  }
}

inline void store(int32_t dtype, void* buf, size_t i, double v) {
  switch (dtype) {
    case TPPP_DTYPE_F32: static_cast<float*>(buf)[i] = static_cast<float>(v); break;
    case TPPP_DTYPE_F16: static_cast<uint16_t*>(buf)[i] = tppp::f32_to_f16(static_cast<float>(v)); break;
    case TPPP_DTYPE_BF16: static_cast<uint16_t*>(buf)[i] = tppp::f32_to_bf16(static_cast<float>(v)); break;
    case TPPP_DTYPE_I32: static_cast<int32_t*>(buf)[i] = static_cast<int32_t>(v); break;
    case TPPP_DTYPE_I64: static_cast<int64_t*>(buf)[i] = static_cast<int64_t>(v); break;
    case TPPP_DTYPE_I8: static_cast<int8_t*>(buf)[i] = static_cast<int8_t>(v); break;
    default: static_cast<uint8_t*>(buf)[i] = static_cast<uint8_t>(v); break;
  }
}

inline double load(int32_t dtype, const void* buf, size_t i) {
  switch (dtype) {
    case TPPP_DTYPE_F32: return static_cast<const float*>(buf)[i];
    case TPPP_DTYPE_F16: return tppp::f16_to_f32(static_cast<const uint16_t*>(buf)[i]);
    case TPPP_DTYPE_BF16: return tppp::bf16_to_f32(static_cast<const uint16_t*>(buf)[i]);
    case TPPP_DTYPE_I32: return static_cast<const int32_t*>(buf)[i];
    case TPPP_DTYPE_I64: return static_cast<double>(static_cast<const int64_t*>(buf)[i]);
    case TPPP_DTYPE_I8: return static_cast<const int8_t*>(buf)[i];
    default: return static_cast<const uint8_t*>(buf)[i];
  }
}

// Fills with NaN-ish bytes so an untouched output cannot pass.
inline void poison(void* buf, size_t bytes) { std::memset(buf, 0xff, bytes); }

// ||got - ref||_inf / max(||ref||_inf, tiny); NaN becomes +inf.
inline double rel_err(int32_t dtype, const void* got, const std::vector<double>& ref) {
  double num = 0, den = 1e-30;
  for (size_t i = 0; i < ref.size(); i++) {
    double g = load(dtype, got, i);
    double d = std::fabs(g - ref[i]);
    if (!(d == d)) return INFINITY;
    num = std::max(num, d);
    den = std::max(den, std::fabs(ref[i]));
  }
  return num / den;
}

inline double tolerance(int32_t dtype, int nranks) {
  switch (dtype) {
    case TPPP_DTYPE_F32: return 1e-6 * nranks;
    case TPPP_DTYPE_F16: return 1e-3 * nranks;
    case TPPP_DTYPE_BF16: return 8e-3 * nranks;
    default: return 0;
  }
}

// Sets an environment variable for a scope.
struct ScopedEnv {
  std::string k;
  std::string old;
  bool had;
  ScopedEnv(const char* key, const char* v) : k(key) {
    const char* o = std::getenv(key);
    had = o != nullptr;
    if (o) old = o;
    if (v)
      setenv(key, v, 1);
    else
      unsetenv(key);
  }
  ~ScopedEnv() {
    if (had)
      setenv(k.c_str(), old.c_str(), 1);
    else
      unsetenv(k.c_str());
  }
};

// A contiguous host tensor descriptor.
inline tppp_tensor tensor(void* data, int32_t dt, std::initializer_list<int64_t> shape) {
  tppp_tensor t{};
  t.data = data;
  t.mem_kind = TPPP_MEM_HOST;
  t.device = -1;
  t.dtype = dt;
  t.ndim = static_cast<int32_t>(shape.size());
  int i = 0;
  for (int64_t s : shape) t.shape[i++] = s;
  return t;
}
inline tppp_tensor tensor(void* data, int32_t dt, int64_t rows, int64_t cols) { return tensor(data, dt, {rows, cols}); }

// The GPU under test: TPPP_TEST_DEVICE (a CUDA ordinal, set by
// scripts/gpu-check.sh), else TPPP_DEVICE_CPU. Read from the environment only:
// the parent process must not touch CUDA before it forks the ranks.
inline int test_device() {
  const char* d = std::getenv("TPPP_TEST_DEVICE");
  return d && *d ? std::atoi(d) : TPPP_DEVICE_CPU;
}

inline tppp_group_params params(int tp, int pp, int timeout_ms = 20000) {
  tppp_group_params p;
  tppp_group_params_init(&p, sizeof p);
  p.tp_size = tp;
  p.pp_size = pp;
  p.timeout_ms = timeout_ms;
  return p;
}

}  // namespace th
