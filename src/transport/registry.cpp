// The transport table: the one place that knows which transports are built in
// and picks one for a group. Every rank states what it computes on (CPU, or
// which GPU of which host); all ranks see the same table, so they all choose
// the same way, or all fail with the same message.
#include <map>

#include "core/bootstrap.hpp"
#include "core/error.hpp"
#include "cuda/device.hpp"
#include "transport/transport.hpp"
#include "transport/ucx/ucx_transport.hpp"
#if TPPP_HAVE_CUDA
#include "transport/device/device_transport.hpp"
#endif
#if TPPP_HAVE_NCCL
#include "transport/nccl/nccl_transport.hpp"
#endif

namespace tppp {
namespace {

// What a build lacks is refused here, naming it; the choice below is the same in every build.
#if TPPP_HAVE_NCCL
constexpr bool kHaveNccl = true;
std::shared_ptr<Transport> make_nccl(Bootstrap& bs, const TransportConfig& cfg) {
  return std::make_shared<NcclTransport>(bs, cfg);
}
#else
constexpr bool kHaveNccl = false;
std::shared_ptr<Transport> make_nccl(Bootstrap&, const TransportConfig&) {
  fail(TPPP_ERR_NOT_SUPPORTED, "this libtppp was built without NCCL; use TPPP_TRANSPORT_UCX or AUTO");
}
#endif
#if TPPP_HAVE_CUDA
std::shared_ptr<Transport> make_device(std::shared_ptr<Transport> ucx, std::shared_ptr<Transport> nccl,
                                       const TransportConfig& cfg) {
  return std::make_shared<DeviceTransport>(std::move(ucx), std::move(nccl), cfg.device, cfg.timeout_ms);
}
#else
std::shared_ptr<Transport> make_device(std::shared_ptr<Transport>, std::shared_ptr<Transport>,
                                       const TransportConfig& cfg) {
  fail(TPPP_ERR_NOT_SUPPORTED, "CUDA device %d requested, but libtppp was built without CUDA", cfg.device);
}
#endif

}  // namespace

std::shared_ptr<Transport> create_transport(int32_t kind, Bootstrap& bs, const TransportConfig& cfg) {
  if (kind != TPPP_TRANSPORT_AUTO && kind != TPPP_TRANSPORT_UCX && kind != TPPP_TRANSPORT_NCCL)
    fail(TPPP_ERR_INVALID_ARGUMENT, "transport %d is not a TPPP_TRANSPORT_* value", kind);
  const bool cpu = cfg.device == TPPP_DEVICE_CPU;
  const std::vector<std::string> all = bs.all_gather(cpu ? std::string("cpu") : "gpu " + cuda_device_identity(cfg.device));
  std::map<std::string, int> owner;  // device -> first rank on it
  int shared_a = -1, shared_b = -1;  // two ranks on one GPU, if any
  for (int r = 0; r < static_cast<int>(all.size()); r++) {
    const std::string& d = all[static_cast<size_t>(r)];
    if ((d == "cpu") != (all[0] == "cpu"))
      fail(TPPP_ERR_INVALID_ARGUMENT, "rank 0 computes on %s but rank %d on %s: a group is all CPU or all CUDA",
           all[0].c_str(), r, d.c_str());
    auto it = owner.emplace(d, r);
    if (!it.second && shared_a < 0) {
      shared_a = it.first->second;
      shared_b = r;
    }
  }
  if (cpu) {
    if (kind == TPPP_TRANSPORT_NCCL)
      fail(TPPP_ERR_NOT_SUPPORTED, "NCCL moves device memory: a CPU group (device = TPPP_DEVICE_CPU) uses "
           "TPPP_TRANSPORT_UCX or AUTO");
    return std::make_shared<UcxTransport>(bs, cfg);
  }
  if (kind == TPPP_TRANSPORT_NCCL && shared_a >= 0)
    fail(TPPP_ERR_NOT_SUPPORTED, "ranks %d and %d both use %s: NCCL cannot run two ranks on one GPU; use "
         "TPPP_TRANSPORT_UCX or AUTO (UCX with device buffers)", shared_a, shared_b,
         all[static_cast<size_t>(shared_a)].c_str());
  const bool nccl = kind == TPPP_TRANSPORT_NCCL || (kind == TPPP_TRANSPORT_AUTO && kHaveNccl && shared_a < 0);
  auto ucx = std::make_shared<UcxTransport>(bs, cfg);
  return make_device(std::move(ucx), nccl ? make_nccl(bs, cfg) : nullptr, cfg);
}

}  // namespace tppp
