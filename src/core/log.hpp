// Process-wide logging: a host callback (tppp_set_log_callback) or stderr,
// filtered by level (TPPP_LOG_LEVEL=0..3 for the default sink).
#pragma once
#include <cstdint>

namespace tppp {

void log_set_callback(void (*fn)(int32_t, const char*, void*), void* user, int32_t max_level);
bool log_enabled(int32_t level);
void log(int32_t level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

}  // namespace tppp

#define TPPP_LOG(level, ...)                                   \
  do {                                                         \
    if (::tppp::log_enabled(level)) ::tppp::log(level, __VA_ARGS__); \
  } while (0)
