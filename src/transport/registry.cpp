// The transport table: the one place that knows which transports are built in
// and picks one for a group. Every rank states what it computes on (CPU, or
// which GPU of which host); all ranks see the same table, so they all choose
// the same way, or all fail with the same message.
#include <map>

#include "backend/device.hpp"
#include "core/bootstrap.hpp"
#include "core/error.hpp"
#include "transport/transport.hpp"
#include "transport/ucx/ucx_transport.hpp"
#if TPPP_HAVE_CUDA
#include "transport/device/device_transport.hpp"
#endif
#if TPPP_HAVE_NCCL
#include "transport/nccl/nccl_transport.hpp"
#endif

namespace tppp {

std::shared_ptr<Transport> create_transport(int32_t kind, Bootstrap& bs, const TransportConfig& cfg) {
  if (kind != TPPP_TRANSPORT_AUTO && kind != TPPP_TRANSPORT_UCX && kind != TPPP_TRANSPORT_NCCL)
    fail(TPPP_ERR_INVALID_ARGUMENT, "transport %d is not a TPPP_TRANSPORT_* value", kind);
  const std::string me = cfg.device == TPPP_DEVICE_CPU ? std::string("cpu") : "gpu " + cuda_device_identity(cfg.device);
  const std::vector<std::string> all = bs.all_gather(me);
  const bool cpu = cfg.device == TPPP_DEVICE_CPU;
  std::map<std::string, int> owner;
  int shared_a = -1, shared_b = -1;
  for (int r = 0; r < static_cast<int>(all.size()); r++) {
    if ((all[static_cast<size_t>(r)] == "cpu") != (all[0] == "cpu"))
      fail(TPPP_ERR_INVALID_ARGUMENT, "rank 0 computes on %s but rank %d on %s: a group is all CPU or all CUDA",
           all[0].c_str(), r, all[static_cast<size_t>(r)].c_str());
    auto it = owner.emplace(all[static_cast<size_t>(r)], r);
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
#if TPPP_HAVE_CUDA
  const bool shared = shared_a >= 0;
  bool nccl = false;
  if (kind == TPPP_TRANSPORT_NCCL) {
#if !TPPP_HAVE_NCCL
    fail(TPPP_ERR_NOT_SUPPORTED, "this libtppp was built without NCCL; use TPPP_TRANSPORT_UCX or AUTO");
#endif
    if (shared)
      fail(TPPP_ERR_NOT_SUPPORTED, "ranks %d and %d both use %s: NCCL cannot run two ranks on one GPU; use "
           "TPPP_TRANSPORT_UCX or AUTO (UCX with device buffers)", shared_a, shared_b,
           all[static_cast<size_t>(shared_a)].c_str());
    nccl = true;
  }
#if TPPP_HAVE_NCCL
  if (kind == TPPP_TRANSPORT_AUTO && !shared) nccl = true;
#endif
  auto ucx = std::make_shared<UcxTransport>(bs, cfg);
  std::shared_ptr<Transport> nc;
#if TPPP_HAVE_NCCL
  if (nccl) nc = std::make_shared<NcclTransport>(bs, cfg);
#else
  (void)nccl;
#endif
  return std::make_shared<DeviceTransport>(ucx, nc, cfg.device);
#else
  (void)shared_b;
  fail(TPPP_ERR_NOT_SUPPORTED, "CUDA device %d requested, but libtppp was built without CUDA", cfg.device);
#endif
}

}  // namespace tppp
