// Internal error type: every failure inside the library throws tppp::Error
// (a status from c_api.h plus a message naming rank, peer, op). The C shims
// in src/c_api/ catch it and turn it into a status + tppp_last_error().
#pragma once
#include <cstdarg>
#include <stdexcept>
#include <string>

#include "c_api.h"

namespace tppp {

class Error : public std::runtime_error {
 public:
  Error(tppp_status s, std::string msg) : std::runtime_error(std::move(msg)), status_(s) {}
  tppp_status status() const noexcept { return status_; }

 private:
  tppp_status status_;
};

// printf-style message formatting.
std::string strf(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
std::string vstrf(const char* fmt, va_list ap);

[[noreturn]] void fail(tppp_status s, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

// errno text ("Connection refused (errno 111)").
std::string errno_text(int err);

}  // namespace tppp
