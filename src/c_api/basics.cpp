// extern "C" shims of the basics: versions, statuses, the thread-local last
// error, the log callback, dtype sizes.
#include <string>

#include "c_api.h"
#include "c_api/shim.hpp"
#include "core/dtype.hpp"
#include "core/error.hpp"
#include "core/log.hpp"

namespace tppp_shim {
std::string& last_error() {
  thread_local std::string e;
  return e;
}
}  // namespace tppp_shim

using tppp_shim::set_error;

extern "C" {

uint32_t tppp_version(void) { return TPPP_VERSION_CODE; }

int32_t tppp_abi_check(uint32_t major, uint32_t minor) {
  if (major != TPPP_VERSION_MAJOR || minor > TPPP_VERSION_MINOR)
    return set_error(TPPP_ERR_VERSION_MISMATCH,
                     tppp::strf("header version %u.%u is not served by library %d.%d.%d", major, minor,
                                TPPP_VERSION_MAJOR, TPPP_VERSION_MINOR, TPPP_VERSION_PATCH)
                         .c_str());
  return TPPP_OK;
}

const char* tppp_status_string(tppp_status s) {
  switch (s) {
    case TPPP_OK: return "TPPP_OK";
    case TPPP_ERR_INVALID_ARGUMENT: return "TPPP_ERR_INVALID_ARGUMENT";
    case TPPP_ERR_INVALID_USAGE: return "TPPP_ERR_INVALID_USAGE";
    case TPPP_ERR_OUT_OF_MEMORY: return "TPPP_ERR_OUT_OF_MEMORY";
    case TPPP_ERR_IO: return "TPPP_ERR_IO";
    case TPPP_ERR_FORMAT: return "TPPP_ERR_FORMAT";
    case TPPP_ERR_CUDA: return "TPPP_ERR_CUDA";
    case TPPP_ERR_NCCL: return "TPPP_ERR_NCCL";
    case TPPP_ERR_UCX: return "TPPP_ERR_UCX";
    case TPPP_ERR_SYSTEM: return "TPPP_ERR_SYSTEM";
    case TPPP_ERR_REMOTE: return "TPPP_ERR_REMOTE";
    case TPPP_ERR_TIMEOUT: return "TPPP_ERR_TIMEOUT";
    case TPPP_ERR_IN_PROGRESS: return "TPPP_ERR_IN_PROGRESS";
    case TPPP_ERR_ABORTED: return "TPPP_ERR_ABORTED";
    case TPPP_ERR_VERSION_MISMATCH: return "TPPP_ERR_VERSION_MISMATCH";
    case TPPP_ERR_NOT_SUPPORTED: return "TPPP_ERR_NOT_SUPPORTED";
    case TPPP_ERR_INTERNAL: return "TPPP_ERR_INTERNAL";
    default: return "TPPP_ERR_UNKNOWN_STATUS";
  }
}

const char* tppp_last_error(void) { return tppp_shim::last_error().c_str(); }

tppp_status tppp_set_log_callback(tppp_log_fn fn, void* user, int32_t max_level) {
  API_BEGIN
  REQUIRE(max_level >= TPPP_LOG_ERROR && max_level <= TPPP_LOG_DEBUG, "log level %d is not a TPPP_LOG_* value",
          max_level);
  tppp::log_set_callback(fn, user, max_level);
  API_END
}

tppp_status tppp_dtype_size(int32_t dtype, size_t* out) {
  API_BEGIN
  REQUIRE(out, "tppp_dtype_size: out is NULL");
  *out = esize(dtype, "tppp_dtype_size");
  API_END
}

}  // extern "C"
