// Bootstrap: how world_size processes find each other before any transport
// exists. NCCL-style: rank 0 listens (its address + a random magic travel in
// the tppp_unique_id, or come from MASTER_ADDR/MASTER_PORT), every other rank
// connects and says hello; once all have joined, the star of TCP connections
// stays open for small out-of-band exchanges (transport addresses, NCCL ids)
// during group creation. Every step is bounded by the group timeout.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "c_api.h"
#include "core/socket.hpp"

namespace tppp {

struct BootstrapAddr {
  uint32_t ip_be = 0;    // IPv4, network order
  uint16_t port = 0;     // host order
  uint64_t magic = 0;    // identifies the group; a stale id has another
};

// Opens a listener (TPPP_BOOTSTRAP_PORT or ephemeral) held by this process
// until rank 0's tppp_group_create takes it, and encodes it.
void make_unique_id(tppp_unique_id* out);
// An id for a root at ip:port with a given magic (tests that span simulated
// hosts agree on one without passing bytes); listen: also open the root's
// listener here (the root's host), as make_unique_id does.
void make_unique_id_at(uint32_t ip_be, uint16_t port, uint64_t magic, bool listen, tppp_unique_id* out);
// Validates the layout and checksum; throws INVALID_ARGUMENT on garbage.
BootstrapAddr parse_unique_id(const tppp_unique_id& id);
// Takes the listener made for `magic` out of this process's table (-1: none).
int take_listener(uint64_t magic);
// Closes this process's copy of an id's listener (forked test children).
void forget_unique_id(const tppp_unique_id& id);

struct JoinConfig {
  int world = 1, rank = 0, tp = 1, pp = 1;
  int timeout_ms = 60000;
  std::string secret;  // TPPP_GROUP_SECRET: "" = none
};

// The hello's proof of the group secret (0 without one).
uint64_t hello_auth(const std::string& secret, uint64_t magic, uint32_t rank, uint32_t world);
// Rank 0's listener: on ip_be only when it is this host's, else (NAT, a
// TPPP_BOOTSTRAP_ADDR of another host) on every address, with a warning.
Fd listen_root(uint32_t ip_be, uint16_t port, uint16_t* bound);

class Bootstrap {
 public:
  // Rank 0 passes the listener it owns (taken from the table or bound to
  // MASTER_PORT); others pass -1 and connect to addr.
  static std::unique_ptr<Bootstrap> join(const BootstrapAddr& addr, Fd listener, const JoinConfig& cfg);
  // Every rank contributes a blob; all get every rank's blob, in rank order.
  std::vector<std::string> all_gather(const std::string& mine);
  // Rank 0's blob to every rank.
  std::string broadcast(const std::string& root_blob);
  void barrier() { all_gather(std::string()); }

 private:
  Bootstrap() = default;
  JoinConfig cfg_;
  std::vector<Fd> peers_;  // rank 0: index r holds rank r's connection
  Fd root_;                // others: the connection to rank 0
};

// FNV-1a 64.
uint64_t fnv1a64(const void* data, size_t n, uint64_t seed = 1469598103934665603ull);

}  // namespace tppp
