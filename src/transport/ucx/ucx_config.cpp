// UCX settings for a group's context: the network interface and TCP's
// segment sizes (see configure_ucx below for the why), unless the user set
// them.
#include "transport/ucx/ucx_config.hpp"

#include <dirent.h>

#include <string>
#include <vector>

#include "c_api.h"
#include "core/env.hpp"
#include "core/log.hpp"

namespace tppp {
namespace {

// Every RDMA port, as UCX names them ("mlx5_0:1"), from sysfs.
std::vector<std::string> rdma_ports() {
  std::vector<std::string> out;
  DIR* d = ::opendir("/sys/class/infiniband");
  if (!d) return out;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] == '.') continue;
    std::string dev = e->d_name;
    DIR* p = ::opendir(("/sys/class/infiniband/" + dev + "/ports").c_str());
    if (!p) continue;
    while (dirent* q = ::readdir(p))
      if (q->d_name[0] != '.') out.push_back(dev + ":" + q->d_name);
    ::closedir(p);
  }
  ::closedir(d);
  return out;
}

std::string join_devices(const std::string& first, const std::vector<std::string>& rest) {
  std::string s = first;
  for (const auto& r : rest) s += "," + r;
  return s;
}

}  // namespace

// Settings libtppp gives UCX unless the user set them (UCX_* wins):
// - NET_DEVICES: the interface the bootstrap chose (the one that routes to
//   the root, core/netif.hpp), plus every RDMA port, so that UCX's TCP does
//   not reach for another interface with a local-only address (docker0)
//   while InfiniBand and RoCE stay in use. Not for a loopback interface
//   (one host: shared memory carries everything).
// - TCP_TX_SEG_SIZE / TCP_RX_SEG_SIZE 256k: with UCX's 8 KiB default, a
//   message over ~8 KiB to another host goes by rendezvous, a handshake of
//   three messages before the data; every ring segment (256 KiB,
//   host_collectives.hpp) paid it, and a 2-host all_reduce of 1 MiB took
//   2.07 ms against 0.71 ms with one eager message per segment (same run).
//   Only TCP reads these; shared memory and RDMA keep their own protocols.
void configure_ucx(ucp_config_t* config, const TransportConfig& cfg) {
  // key: as ucp_config_modify takes it (a transport's key without its
  // prefix: only TCP has TX_/RX_SEG_SIZE); user: the variable that wins.
  auto set = [&](const char* key, const std::string& value, const char* user) {
    if (value.empty() || process_env(user)) return;
    ucs_status_t s = ucp_config_modify(config, key, value.c_str());
    if (s != UCS_OK)
      TPPP_LOG(TPPP_LOG_WARN, "UCX would not take %s=%s: %s", key, value.c_str(), ucs_status_string(s));
    else
      TPPP_LOG(TPPP_LOG_DEBUG, "UCX_%s=%s", key, value.c_str());
  };
  if (!cfg.net_device.empty()) set("NET_DEVICES", join_devices(cfg.net_device, rdma_ports()), "UCX_NET_DEVICES");
  set("TX_SEG_SIZE", "256k", "UCX_TCP_TX_SEG_SIZE");
  set("RX_SEG_SIZE", "256k", "UCX_TCP_RX_SEG_SIZE");
}

}  // namespace tppp
