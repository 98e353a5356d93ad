// Handle structs shared by the shim files (opaque to hosts), and the checks
// every group-taking shim makes on its handle.
#pragma once
#include <memory>

#include "c_api/shim.hpp"
#include "group/group.hpp"
#include "layers/tp_layer.hpp"
#include "loader/checkpoint.hpp"

namespace tppp_shim {
struct RequestHome;                               // c_api/comm.cpp: a group's request handles
void group_gone(RequestHome* home) noexcept;      // the group is destroyed: free it once no request lives
}  // namespace tppp_shim

struct tppp_group_s {
  std::unique_ptr<tppp::Group> g;
  tppp_shim::RequestHome* requests = nullptr;  // made by the first p2p call
  ~tppp_group_s() { tppp_shim::group_gone(requests); }
};

struct tppp_checkpoint_s {
  std::unique_ptr<tppp::Checkpoint> c;
};

struct tppp_layer_s {
  std::unique_ptr<tppp::TpLayer> l;
};

namespace tppp_shim {

// The group of a handle, refused when NULL or aborted.
inline tppp::Group& live(tppp_group_t g, const char* op) {
  REQUIRE(g && g->g, "%s: group handle is NULL", op);
  g->g->check_live(op);
  return *g->g;
}

// peer is an index into the communicator c.
inline void check_peer(const tppp::Comm& c, int32_t peer, const char* op) {
  REQUIRE(peer >= 0 && peer < c.size(), "%s: peer %d is outside the %s group of size %d", op, peer, c.name,
          c.size());
}

}  // namespace tppp_shim
