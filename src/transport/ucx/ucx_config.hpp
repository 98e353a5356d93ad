// The UCX settings libtppp chooses for a group (ucx_config.cpp says which
// and why); the user's own UCX_* variables always win.
#pragma once
#include <ucp/api/ucp.h>

#include "transport/transport.hpp"

namespace tppp {

void configure_ucx(ucp_config_t* config, const TransportConfig& cfg);

}  // namespace tppp
