// Message formatting for tppp::Error.
#include "core/error.hpp"

#include <cstdio>
#include <cstring>

namespace tppp {

std::string vstrf(const char* fmt, va_list ap) {
  va_list ap2;
  va_copy(ap2, ap);
  int n = std::vsnprintf(nullptr, 0, fmt, ap2);
  va_end(ap2);
  if (n <= 0) return std::string();
  std::string s(static_cast<size_t>(n) + 1, '\0');
  std::vsnprintf(&s[0], s.size(), fmt, ap);
  s.resize(static_cast<size_t>(n));
  return s;
}

std::string strf(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  std::string s = vstrf(fmt, ap);
  va_end(ap);
  return s;
}

void fail(tppp_status s, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  std::string m = vstrf(fmt, ap);
  va_end(ap);
  throw Error(s, std::move(m));
}

std::string errno_text(int err) {
  char buf[256];
  // GNU strerror_r returns char*.
  const char* t = strerror_r(err, buf, sizeof buf);
  return strf("%s (errno %d)", t, err);
}

}  // namespace tppp
