// The transport table: the one place that knows which transports are built in
// and picks one for a group (AUTO: UCX for CPU groups).
#include "core/error.hpp"
#include "transport/transport.hpp"
#include "transport/ucx/ucx_transport.hpp"

namespace tppp {

std::shared_ptr<Transport> create_transport(int32_t kind, Bootstrap& bs, const TransportConfig& cfg) {
  if (kind == TPPP_TRANSPORT_NCCL)
    fail(TPPP_ERR_NOT_SUPPORTED,
         "the NCCL transport is not in this version (it needs the CUDA backend); use TPPP_TRANSPORT_UCX or AUTO");
  if (cfg.device != TPPP_DEVICE_CPU)
    fail(TPPP_ERR_NOT_SUPPORTED,
         "CUDA device %d is present, but device groups need a transport for device memory (NCCL, or UCX with "
         "staging), which this version does not have yet; use device = TPPP_DEVICE_CPU",
         cfg.device);
  if (kind == TPPP_TRANSPORT_AUTO || kind == TPPP_TRANSPORT_UCX) return std::make_shared<UcxTransport>(bs, cfg);
  fail(TPPP_ERR_INVALID_ARGUMENT, "transport %d is not a TPPP_TRANSPORT_* value", kind);
}

}  // namespace tppp
