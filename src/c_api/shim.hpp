// Shared by the extern "C" shim files: the thread-local last error and the
// API_BEGIN/API_END guard that turns every exception into a status. Only a
// failure writes the last error (like ncclGetLastError): a successful call
// touches no thread-local state, which keeps the p2p hot path short.
#pragma once
#include <cstring>
#include <new>
#include <string>

#include "c_api.h"
#include "core/dtype.hpp"
#include "core/error.hpp"
#include "core/log.hpp"

namespace tppp_shim {

std::string& last_error();  // thread-local, defined in basics.cpp

inline tppp_status set_error(tppp_status s, const char* msg) {
  last_error() = msg ? msg : "";
  if (tppp::log_enabled(TPPP_LOG_DEBUG)) tppp::log(TPPP_LOG_DEBUG, "%s: %s", tppp_status_string(s), msg);
  return s;
}

// Copies min(struct_size, sizeof) bytes of a versioned struct over defaults.
template <typename T>
void read_versioned(const T* in, T* out, const char* what) {
  if (in->struct_size < sizeof(uint32_t))
    tppp::fail(TPPP_ERR_INVALID_ARGUMENT, "%s.struct_size is %u: call %s_init first", what, in->struct_size, what);
  size_t n = in->struct_size < sizeof(T) ? in->struct_size : sizeof(T);
  std::memcpy(out, in, n);
  out->struct_size = sizeof(T);
}

// Writes min(caller's struct_size, sizeof) bytes of an out-struct.
template <typename T>
void write_versioned(const T& v, T* out, const char* what) {
  if (out->struct_size < sizeof(uint32_t))
    tppp::fail(TPPP_ERR_INVALID_ARGUMENT, "%s.struct_size is %u: set it to sizeof first", what, out->struct_size);
  size_t n = out->struct_size < sizeof(T) ? out->struct_size : sizeof(T);
  T tmp = v;
  tmp.struct_size = static_cast<uint32_t>(n);
  std::memcpy(out, &tmp, n);
}

// *_params_init(p, size): the library's defaults, cut to the caller's size.
template <typename T>
void init_versioned(T* p, size_t size, const T& defaults, const char* fn) {
  if (!p) tppp::fail(TPPP_ERR_INVALID_ARGUMENT, "%s: params is NULL", fn);
  if (size < sizeof(uint32_t)) tppp::fail(TPPP_ERR_INVALID_ARGUMENT, "%s: size %zu is too small", fn, size);
  T d = defaults;
  size_t n = size < sizeof d ? size : sizeof d;
  d.struct_size = static_cast<uint32_t>(n);
  std::memcpy(p, &d, n);
}

}  // namespace tppp_shim

#define API_BEGIN \
  try {
#define API_END                                                                        \
  }                                                                                    \
  catch (const tppp::Error& e) {                                                       \
    return ::tppp_shim::set_error(e.status(), e.what());                               \
  }                                                                                    \
  catch (const std::bad_alloc&) {                                                      \
    return ::tppp_shim::set_error(TPPP_ERR_OUT_OF_MEMORY, "out of host memory");       \
  }                                                                                    \
  catch (const std::exception& e) {                                                    \
    return ::tppp_shim::set_error(TPPP_ERR_INTERNAL, e.what());                        \
  }                                                                                    \
  catch (...) {                                                                        \
    return ::tppp_shim::set_error(TPPP_ERR_INTERNAL, "unknown exception");             \
  }                                                                                    \
  return TPPP_OK;

#define REQUIRE(cond, ...) \
  if (!(cond)) tppp::fail(TPPP_ERR_INVALID_ARGUMENT, __VA_ARGS__)

// Element size of a valid dtype; INVALID_ARGUMENT naming op otherwise.
inline size_t esize(int32_t dtype, const char* op) {
  REQUIRE(tppp::dtype_valid(dtype), "%s: dtype %d is not a TPPP_DTYPE_* value", op, dtype);
  return tppp::dtype_size(dtype);
}
