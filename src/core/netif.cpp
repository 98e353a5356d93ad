// Interface choice for the bootstrap and UCX; see netif.hpp for the why.
#include "core/netif.hpp"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

#include "c_api.h"
#include "core/env.hpp"
#include "core/log.hpp"
#include "core/socket.hpp"

namespace tppp {
namespace {

// Interfaces another host cannot reach: container and VM bridges, their
// veth ends, overlay tunnels (NCCL leaves out docker* and lo* the same way).
bool looks_local_only(const std::string& name) {
  for (const char* p : {"docker", "virbr", "veth", "br-", "cni", "flannel", "cali", "podman", "lxc", "lxd"})
    if (name.compare(0, std::strlen(p), p) == 0) return true;
  return false;
}

}  // namespace

std::vector<NetIf> ipv4_interfaces() {
  std::vector<NetIf> out;
  ifaddrs* ifs = nullptr;
  if (getifaddrs(&ifs) != 0) return out;
  for (ifaddrs* i = ifs; i; i = i->ifa_next) {
    if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET || !(i->ifa_flags & IFF_UP)) continue;
    NetIf n;
    n.name = i->ifa_name ? i->ifa_name : "";
    n.name = n.name.substr(0, n.name.find(':'));  // "eth0:1", a labelled address: the device is eth0
    n.ip_be = reinterpret_cast<sockaddr_in*>(i->ifa_addr)->sin_addr.s_addr;
    n.loopback = (i->ifa_flags & IFF_LOOPBACK) != 0;
    out.push_back(n);
  }
  freeifaddrs(ifs);
  return out;
}

NetIf interface_with(const std::vector<NetIf>& ifs, uint32_t ip_be) {
  for (const NetIf& n : ifs)
    if (n.ip_be == ip_be) return n;
  NetIf none;
  none.ip_be = ip_be;
  none.loopback = (ntohl(ip_be) >> 24) == 127;
  return none;
}

NetIf pick_advertised(const std::vector<NetIf>& ifs, uint32_t default_route_src) {
  if (default_route_src) {
    NetIf d = interface_with(ifs, default_route_src);
    if (!d.name.empty() && !d.loopback) return d;
  }
  for (const NetIf& n : ifs)
    if (!n.loopback && !looks_local_only(n.name)) return n;
  for (const NetIf& n : ifs)
    if (!n.loopback) return n;
  NetIf lo;
  lo.name = "lo";
  lo.ip_be = htonl(INADDR_LOOPBACK);
  lo.loopback = true;
  for (const NetIf& n : ifs)
    if (n.loopback) return n;
  return lo;
}

bool route_source(uint32_t dest_be, uint32_t* src_be) {
  Fd fd(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return false;
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = dest_be;
  sa.sin_port = htons(9);  // discard; a UDP connect only picks the route
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) return false;
  socklen_t len = sizeof sa;
  if (::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&sa), &len) != 0) return false;
  *src_be = sa.sin_addr.s_addr;
  return *src_be != 0;
}

NetIf advertised_interface() {
  const auto ifs = ipv4_interfaces();
  const std::string e = env_str(Env::BootstrapAddr);
  if (!e.empty()) return interface_with(ifs, resolve_ipv4(e));
  uint32_t def = 0;
  in_addr probe{};
  inet_pton(AF_INET, "192.0.2.1", &probe);  // TEST-NET-1: any address the default route takes
  if (!route_source(probe.s_addr, &def)) def = 0;
  return pick_advertised(ifs, def);
}

NetIf interface_toward(uint32_t root_be) {
  const auto ifs = ipv4_interfaces();
  const std::string e = env_str(Env::BootstrapAddr);
  if (!e.empty()) return interface_with(ifs, resolve_ipv4(e));
  uint32_t src = 0;
  if (route_source(root_be, &src)) return interface_with(ifs, src);
  TPPP_LOG(TPPP_LOG_WARN, "bootstrap: no route to the root %s: using the advertised interface",
           addr_string(root_be, 0).c_str());
  return advertised_interface();
}

}  // namespace tppp
