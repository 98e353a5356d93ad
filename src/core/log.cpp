// Logging sink: a mutex-guarded (callback, user, level) triple.
#include "core/log.hpp"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>

#include "c_api.h"
#include "core/env.hpp"
#include "core/error.hpp"

namespace tppp {
namespace {

struct Sink {
  std::mutex mu;
  void (*fn)(int32_t, const char*, void*) = nullptr;
  void* user = nullptr;
  std::atomic<int32_t> level{-2};  // -2: not read from the environment yet
};

Sink& sink() {
  static Sink s;
  return s;
}

int32_t env_level() {
  const std::string e = env_str(Env::LogLevel);
  if (e.empty()) return TPPP_LOG_WARN;
  int v = std::atoi(e.c_str());
  return v < TPPP_LOG_ERROR ? TPPP_LOG_ERROR : (v > TPPP_LOG_DEBUG ? TPPP_LOG_DEBUG : v);
}

}  // namespace

void log_set_callback(void (*fn)(int32_t, const char*, void*), void* user, int32_t max_level) {
  Sink& s = sink();
  std::lock_guard<std::mutex> lk(s.mu);
  s.fn = fn;
  s.user = user;
  s.level.store(fn ? max_level : env_level());
}

bool log_enabled(int32_t level) {
  Sink& s = sink();
  int32_t l = s.level.load(std::memory_order_relaxed);
  if (l == -2) {
    l = env_level();
    s.level.store(l);
  }
  return level <= l;
}

void log(int32_t level, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  std::string m = vstrf(fmt, ap);
  va_end(ap);
  Sink& s = sink();
  std::lock_guard<std::mutex> lk(s.mu);
  if (s.fn) {
    s.fn(level, m.c_str(), s.user);
  } else {
    static const char* names[] = {"ERROR", "WARN", "INFO", "DEBUG"};
    std::fprintf(stderr, "tppp %s: %s\n", names[level < 0 ? 0 : (level > 3 ? 3 : level)], m.c_str());
  }
}

}  // namespace tppp
