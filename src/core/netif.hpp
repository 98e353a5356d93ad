// Which network interface a rank uses to reach the others, NCCL-style: the
// one whose address routes to the bootstrap root (MASTER_ADDR, or the root
// address in a unique id), found by asking the kernel's routing table (a
// UDP socket "connected" to the root sends nothing). The root advertises the
// interface of the default route, else the first that is up and not a
// container or virtual bridge (docker0, virbr0, veth*, ...), since another
// host cannot reach those. TPPP_BOOTSTRAP_ADDR wins over both. The choice
// feeds the bootstrap's listener (bound to that address only) and UCX's
// NET_DEVICES (transport/ucx).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace tppp {

struct NetIf {
  std::string name;   // "eth0"; "" when the address is not on this host
  uint32_t ip_be = 0;  // IPv4, network order
  bool loopback = false;
};

// The IPv4 interfaces that are up, in the kernel's order.
std::vector<NetIf> ipv4_interfaces();
// Pure: the interface among `ifs` that holds ip_be (name "" if none).
NetIf interface_with(const std::vector<NetIf>& ifs, uint32_t ip_be);
// Pure: the root's choice: the interface of default_route_src when it is
// one of ifs, else the first non-loopback one not named like a container
// or virtual bridge, else the first non-loopback, else 127.0.0.1.
NetIf pick_advertised(const std::vector<NetIf>& ifs, uint32_t default_route_src);
// The source address the kernel would use toward dest (false: no route).
bool route_source(uint32_t dest_be, uint32_t* src_be);

// What this host advertises as a bootstrap root (tppp_get_unique_id).
NetIf advertised_interface();
// The interface this rank uses to reach the root at root_be.
NetIf interface_toward(uint32_t root_be);

}  // namespace tppp
